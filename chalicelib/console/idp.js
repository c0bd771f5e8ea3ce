// Signing in at the organization's identity provider (OIDC implicit flow, ID token in the URL
// fragment). The console starts every such sign-in itself, with a fresh `state` and `nonce` kept
// in this tab's sessionStorage, and takes only the answer to its own request: an ID token pushed
// into the page by someone else (login CSRF) fails the `state`, and a token taken from another
// sign-in fails the `nonce`, which the API compares with the token's claim.

const PENDING_KEY = "keyward.idp-sign-in";

function randomValue() {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// The IdP's authorization endpoint and keyward's client ID there, as the deployment configured them.
export function idpConfigured() {
  const { idpAuthorizationEndpoint, idpClientId } = document.body.dataset;
  return Boolean(idpAuthorizationEndpoint && idpClientId);
}

export function startIdpSignIn() {
  const { idpAuthorizationEndpoint, idpClientId } = document.body.dataset;
  const pending = { state: randomValue(), nonce: randomValue() };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const url = new URL(idpAuthorizationEndpoint);
  url.searchParams.set("client_id", idpClientId);
  url.searchParams.set("response_type", "id_token");
  url.searchParams.set("response_mode", "fragment");
  url.searchParams.set("scope", "openid email profile");
  url.searchParams.set("redirect_uri", location.origin + location.pathname);
  url.searchParams.set("state", pending.state);
  url.searchParams.set("nonce", pending.nonce);
  location.assign(url.toString());
}

// The IdP's answer in the fragment, checked against the sign-in this tab started. Returns
// { idToken, nonce }, or { refused } with what to tell the user. The pending sign-in is used up
// either way: an answer is accepted once.
export function idpAnswer(fragment) {
  const handed = new URLSearchParams(fragment.replace(/^#/, ""));
  const stored = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  let pending = null;
  try {
    pending = stored ? JSON.parse(stored) : null;
  } catch {
    pending = null;
  }
  if (!pending?.state || handed.get("state") !== pending.state) {
    return { refused: "This sign-in was not started from this page, so it was not accepted. Sign in again with your identity provider." };
  }
  if (handed.get("error")) {
    return { refused: `Your identity provider did not sign you in: ${handed.get("error_description") || handed.get("error")}.` };
  }
  if (!handed.get("id_token")) {
    return { refused: "Your identity provider sent no ID token. Sign in again." };
  }
  return { idToken: handed.get("id_token"), nonce: pending.nonce };
}
