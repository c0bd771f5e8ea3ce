// The console's entry point: signing in (demo users, an IdP's ID token, backup credentials), the
// MFA step and forced registration, then the two settings pages.

import { api, token, whenSessionEnds, whenSessionNeedsStep } from "./api.js";
import { idpAnswer, idpConfigured, startIdpSignIn } from "./idp.js";
import { describe } from "./messages.js";
import { showOrganization, stopOrganization } from "./organization.js";
import { showPersonal } from "./personal.js";
import { $, announce, clearMessages, run, showError, showScreen } from "./ui.js";
import { createCredential, getAssertion } from "./webauthn.js";

const session = {
  me: null,
  refresh: async () => {
    session.me = await api.get("me");
    renderAccount();
    return session.me;
  },
};

// --- Signing in and out ----------------------------------------------------------------------

function showSignIn(reason = null) {
  stopOrganization();
  session.me = null;
  renderAccount();
  const notice = $("sign-in-reason");
  notice.textContent = reason ?? "";
  notice.hidden = !reason;
  showScreen("screen-sign-in");
}

async function signedIn(login) {
  token.set(login.token);
  clearMessages();
  await enter();
}

// Where a session belongs: the MFA prompt, forced registration, or the settings.
async function enter() {
  const me = await session.refresh();
  switch (me.session.state) {
    case "mfa_required":
      showScreen("screen-mfa");
      break;
    case "registration_required":
      $("register-explanation").textContent =
        `Your organization (${me.org.id}) enforces multi-factor authentication: everyone needs a security key `
        + "to sign in. Register yours now to continue — you will use it at every sign-in from now on.";
      showScreen("screen-register");
      break;
    default:
      await showView();
  }
}

async function signOut() {
  try {
    await api.post("auth/logout");
  } catch {
    // Signing out locally is what matters; an ended session cannot be ended twice.
  }
  token.clear();
  showSignIn();
  announce("You signed out.");
}

async function demoSignIn({ org, user, admin }) {
  const { id_token } = await api.post("dev/id-token", { org, user, admin });
  await signedIn(await api.post("auth/login", { id_token }));
}

function wireSignIn() {
  if (document.body.dataset.devSignIn === "on") {
    $("dev-sign-in").hidden = false;
    for (const button of document.querySelectorAll("[data-demo-user]")) {
      button.addEventListener("click", () => run(button, () => demoSignIn({
        org: button.dataset.demoOrg, user: button.dataset.demoUser, admin: button.dataset.demoAdmin === "true",
      })));
    }
    $("dev-sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const org = $("dev-org").value.trim();
      const user = $("dev-user").value.trim();
      if (!org || !user) {
        showError("Enter an organization ID and a user ID.");
        (org ? $("dev-user") : $("dev-org")).focus();
        return;
      }
      run(event.submitter, () => demoSignIn({ org, user, admin: $("dev-admin").checked }));
    });
  }
  if (idpConfigured()) {
    $("idp-start").hidden = false;
    $("idp-start-button").addEventListener("click", startIdpSignIn);
  }
  $("id-token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const idToken = $("id-token").value.trim();
    if (!idToken) {
      showError("Paste the ID token your identity provider issued.");
      $("id-token").focus();
      return;
    }
    run(event.submitter, async () => signedIn(await api.post("auth/login", { id_token: idToken })));
  });
  $("backup-sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const keyId = $("backup-key-id").value.trim();
    const secret = $("backup-secret").value.trim();
    if (!keyId || !secret) {
      showError("Enter the key ID and the secret of your backup credentials.");
      (keyId ? $("backup-secret") : $("backup-key-id")).focus();
      return;
    }
    run(event.submitter, async () => {
      const login = await api.post("auth/backup-login", { key_id: keyId, secret });
      $("backup-secret").value = "";
      await signedIn(login);
      announce("Signed in with backup credentials. This sign-in is recorded in the audit log.");
    });
  });
  $("sign-out").addEventListener("click", (event) => run(event.currentTarget, signOut));
  for (const button of document.querySelectorAll("[data-action=sign-out]")) {
    button.addEventListener("click", () => run(button, signOut));
  }
}

// An IdP that redirects here with response_type=id_token puts the token in the fragment.
async function idTokenFromRedirect() {
  if (!location.hash.includes("id_token=") && !location.hash.includes("error=")) return false;
  const answer = idpAnswer(location.hash);
  // Out of the address bar and the history at once, before anything else can read or log it.
  history.replaceState(null, "", location.pathname + location.search);
  if (answer.refused) {
    showSignIn(answer.refused);
    return true;
  }
  showSignIn();
  await run(null, async () => signedIn(await api.post("auth/login", { id_token: answer.idToken, nonce: answer.nonce })));
  return true;
}

// --- The MFA step and forced registration ------------------------------------------------------

function wireSecondFactor() {
  $("mfa-start").addEventListener("click", (event) => run(event.currentTarget, async () => {
    const { challenge_id, publicKey } = await api.post("auth/mfa/options");
    const credential = await getAssertion(publicKey);
    const login = await api.post("auth/mfa/verify", { challenge_id, credential });
    // The session continues under a new token; the old one no longer works.
    token.set(login.token);
    await enter();
    announce("Security key accepted. You are signed in.");
  }));

  $("register-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("register-name").value.trim();
    if (!name) {
      showError("Give the key a name of 1 to 64 printable characters.");
      $("register-name").focus();
      return;
    }
    run(event.submitter, async () => {
      const { challenge_id, publicKey } = await api.post("me/mfa/keys/options");
      const credential = await createCredential(publicKey);
      const { key } = await api.post("me/mfa/keys", { challenge_id, name, credential });
      await enter();
      announce(`Security key “${key.name}” registered. You are signed in.`);
    });
  });
}

// --- The settings pages ------------------------------------------------------------------------

function currentView() {
  return location.hash === "#/organization" && session.me?.user.admin ? "organization" : "personal";
}

async function showView() {
  if (!session.me || session.me.session.state !== "active") return;
  const view = currentView();
  for (const [name, link] of [["personal", $("nav-personal")], ["organization", $("nav-organization")]]) {
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "organization") {
    await showOrganization(session);
  } else {
    stopOrganization();
    await showPersonal(session);
  }
}

function renderAccount() {
  const me = session.me;
  const active = me?.session.state === "active";
  $("account").hidden = !me;
  $("nav").hidden = !active;
  $("nav-organization").hidden = !(active && me.user.admin);
  if (me) {
    const role = me.user.admin ? "admin" : "member";
    $("account-name").textContent = `${me.user.name || me.user.id} · ${role} of ${me.org.id}`;
  }
}

// --- Start ---------------------------------------------------------------------------------------

async function start() {
  whenSessionEnds((error) => showSignIn(describe(error)));
  whenSessionNeedsStep((error) => {
    run(null, async () => {
      await enter();
      showError(error.code === "MfaRequired"
        ? "Finish the security key check first."
        : "Your organization enforces MFA: register a security key to continue.");
    });
  });
  wireSignIn();
  wireSecondFactor();
  window.addEventListener("hashchange", () => {
    if (!location.hash.startsWith("#/") || session.me?.session.state !== "active") return;
    clearMessages(); // what was said about the last page is not about this one
    run(null, showView);
  });
  // The skip link moves focus without touching the fragment, which names the page shown.
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    $("main").focus();
  });

  if (await idTokenFromRedirect()) return;
  if (!token.get()) {
    showSignIn();
    return;
  }
  await run(null, enter);
  // A session that ended has already led to the sign-in screen, with its reason.
  if (!session.me && !document.querySelector(".screen:not([hidden])")) showSignIn();
}

start();
