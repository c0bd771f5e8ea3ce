"""The organization's counters — members, members with a key, members with a key the policy
accepts — moved together by every transaction that adds or removes a member or a key."""
