// The two WebAuthn ceremonies, through the browser's own JSON helpers: the API sends the W3C JSON
// options and accepts what PublicKeyCredential.toJSON() produces, so no base64 glue lives here.

function supported() {
  return typeof PublicKeyCredential !== "undefined"
    && typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function"
    && typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";
}

function unsupported() {
  const error = new Error("PublicKeyCredential JSON helpers are missing");
  error.name = "UnsupportedBrowser";
  return error;
}

// Registration: options from POST /me/mfa/keys/options → RegistrationResponseJSON.
export async function createCredential(publicKey) {
  if (!supported()) throw unsupported();
  const credential = await navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(publicKey),
  });
  return credential.toJSON();
}

// Authentication: options from POST /auth/mfa/options → AuthenticationResponseJSON.
export async function getAssertion(publicKey) {
  if (!supported()) throw unsupported();
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(publicKey),
  });
  return credential.toJSON();
}
