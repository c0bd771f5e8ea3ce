"""keyward's HTTP API, one Blueprint per area a user sees."""
