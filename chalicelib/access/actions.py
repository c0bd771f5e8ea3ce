"""The actions the assurance rule (chalicelib/access/assurance.py) tells apart: what a request asks to do.

A leaf module, so that every handler can name its action without loading session code at import.
"""

from __future__ import annotations

from enum import Enum


class Action(str, Enum):
    """What a request asks to do, as the rule tells actions apart."""

    READ_ACCOUNT = "see who is signed in, log out"
    MFA_CHECK = "pass the MFA check"
    READ = "read own keys and sessions"
    STEP_UP = "step up"
    RENAME_KEY = "rename a key"
    END_SESSION = "end own sessions"
    REGISTER_FIRST_KEY = "register a first key"
    REGISTER_KEY = "register more keys"
    DELETE_KEY = "delete a key"
    DISABLE_MFA = "disable MFA"
    READ_ORG = "read organization settings"
    CHANGE_ORG = "admin changes"
    CREATE_BACKUP_CREDENTIALS = "create backup credentials"
