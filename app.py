"""keyward: IdP-independent MFA with FIDO2/WebAuthn security keys. This module only wires."""
from chalice import Chalice

from chalicelib.api.auth import auth
from chalicelib.api.me import me

app = Chalice(app_name="keyward")
app.register_blueprint(auth)
app.register_blueprint(me)
