"""Security keys: registering one (with enrolment passes), listing, renaming and deleting a
member's own, and an organization's keys as its admins manage them."""
