"""An organization as its admins run it: enforcing MFA, its members and what enforcing would do
to them."""
