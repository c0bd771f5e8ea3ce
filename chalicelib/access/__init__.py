"""Who a request is and what it may do: the IdP step, sessions and the organization's login rate
they start under, the MFA login, step-up, backup credentials, and the assurance rule that decides
every request (``assurance.require``)."""
