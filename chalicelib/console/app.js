// The console's entry point: signing in (demo users, an IdP's ID token, backup credentials), the
// MFA step and forced registration, then the two settings pages.

import { api, token, whenSessionEnds, whenSessionNeedsStep } from "./api.js";
import { retryWith } from "./connection.js";
import { describe, explained } from "./messages.js";
import {
  forgetOrganization, leaveNewSecret, organizationPage, refreshOrganization, showOrganization, showsNewSecret,
} from "./organization.js";
import { isOrganizationAddress } from "./organization-sections.js";
import { idpAnswer, idpConfigured, startIdpSignIn } from "./idp.js";
import { mfaScreen } from "./mfa-screen.js";
import { shownPage } from "./page.js";
import { forgetPersonal, personalPage, showPersonal } from "./personal.js";
import { registerKey } from "./enrollment.js";
import { replacementText } from "./policy.js";
import { registerScreen } from "./register-screen.js";
import { signInScreen } from "./sign-in-screen.js";
import { enableStepUp } from "./stepup.js";
import {
  announce, clearMessages, frame, refuseField, run, showError, showScreen, shownScreen,
} from "./ui.js";
import { getAssertion } from "./webauthn.js";

const session = {
  me: null,
  refresh: async () => {
    session.me = await api.get("me");
    renderAccount();
    return session.me;
  },
};

// --- Signing in and out ----------------------------------------------------------------------

// How often an open page checks that its session still exists, so that a member whose session
// ended (enforcement, an admin, sign-out elsewhere) is told without having to click first.
const SESSION_CHECK_MS = 30_000;
let sessionCheck = null;

function watchSession() {
  clearTimeout(sessionCheck);
  sessionCheck = setTimeout(checkSession, SESSION_CHECK_MS);
}

async function checkSession() {
  if (!token.get()) return;
  try {
    await api.get("me"); // an ended session leads to the sign-in screen (whenSessionEnds)
  } catch {
    // A network hiccup is not an ended session; the next check or action tells.
  }
  if (token.get()) watchSession();
}

function showSignIn(reason = null) {
  leavePages();
  forgetOrganization();
  clearTimeout(sessionCheck);
  session.me = null;
  renderAccount();
  clearMessages();
  // Nothing the last user typed stays for the next one.
  for (const form of [...signInScreen.forms, registerScreen.form]) form.reset();
  forgetPersonal();
  const notice = signInScreen.reason;
  notice.textContent = reason ?? "";
  notice.hidden = !reason;
  showScreen("screen-sign-in");
}

async function signedIn(login) {
  token.set(login.token);
  clearMessages();
  watchSession();
  await enter();
}

// Where a session belongs: the MFA prompt, forced registration, or the settings.
async function enter() {
  const me = await session.refresh();
  // A session sent to a step first (e.g. by enforcement) leaves the settings page it was on.
  if (me.session.state !== "active") leavePages();
  switch (me.session.state) {
    case "mfa_required":
      showScreen("screen-mfa");
      break;
    case "registration_required":
      // A member holding keys the policy no longer accepts is told which, why, and what would do.
      registerScreen.title.textContent = me.key_policy.keys_to_replace?.length
        ? "Register a security key your organization accepts"
        : "Register your security key";
      registerScreen.explanation.textContent = me.key_policy.keys_to_replace?.length
        ? replacementText(me.key_policy)
        : `Your organization (${me.org.id}) enforces multi-factor authentication: everyone needs a security key `
          + "to sign in. Register yours now to continue — you will use it at every sign-in from now on.";
      // Asked for up front when the organization requires a pass for a first key.
      registerScreen.codeField.hidden = !me.mfa.enrollment_code_required;
      showScreen("screen-register");
      break;
    default:
      await showView();
  }
  sayIfKeyWasDeleted(me);
}

async function signOut() {
  if (!(await leaveNewSecret())) return;
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
  const { demo, idp, idToken, backup } = signInScreen;
  if (document.body.dataset.devSignIn === "on") {
    demo.card.hidden = false;
    for (const button of demo.users) {
      button.addEventListener("click", () => run(button, () => demoSignIn({
        org: button.dataset.demoOrg, user: button.dataset.demoUser, admin: button.dataset.demoAdmin === "true",
      })));
    }
    demo.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const org = demo.org.value.trim();
      const user = demo.user.value.trim();
      if (!org || !user) {
        refuseField(org ? demo.user : demo.org, "Enter an organization ID and a user ID.");
        return;
      }
      run(event.submitter, () => demoSignIn({ org, user, admin: demo.admin.checked }));
    });
  }
  if (idpConfigured()) {
    idp.start.hidden = false;
    idp.button.addEventListener("click", startIdpSignIn);
  }
  idToken.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const given = idToken.input.value.trim();
    if (!given) {
      refuseField(idToken.input, "Paste the ID token your identity provider issued.");
      return;
    }
    run(event.submitter, async () => signedIn(await api.post("auth/login", { id_token: given })),
      { fields: { InvalidIdToken: idToken.input } });
  });
  backup.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const keyId = backup.keyId.value.trim();
    const secret = backup.secret.value.trim();
    if (!keyId || !secret) {
      refuseField(keyId ? backup.secret : backup.keyId, "Enter the key ID and the secret of your backup credentials.");
      return;
    }
    run(event.submitter, async () => {
      const login = await api.post("auth/backup-login", { key_id: keyId, secret });
      backup.secret.value = "";
      await signedIn(login);
      announce("Signed in with backup credentials. This sign-in is recorded in the audit log.");
    }, { fields: { InvalidBackupCredentials: backup.secret, TooManyAttempts: backup.secret } });
  });
  frame.account.signOut.addEventListener("click", (event) => run(event.currentTarget, signOut));
  for (const button of [mfaScreen.signOut, registerScreen.signOut]) {
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
  mfaScreen.start.addEventListener("click", (event) => run(event.currentTarget, async () => {
    const { challenge_id, publicKey } = await api.post("auth/mfa/options");
    let credential;
    try {
      credential = await getAssertion(publicKey);
    } catch (error) {
      throw await whyNoAssertion(error);
    }
    const login = await api.post("auth/mfa/verify", { challenge_id, credential });
    // The session continues under a new token; the old one no longer works.
    token.set(login.token);
    await enter();
    // A key the policy no longer accepts signs in only as far as registering one it does.
    if (login.state === "active") announce("Security key accepted. You are signed in.");
  }));

  registerScreen.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = registerScreen.name.value.trim();
    if (!name) {
      refuseField(registerScreen.name, "Give the key a name of 1 to 64 printable characters.");
      return;
    }
    run(event.submitter, async () => {
      const key = await registerKey({ name, codeField: registerScreen.codeField, codeInput: registerScreen.code });
      if (!key) return;
      await enter();
      announce(`Security key “${key.name}” registered. You are signed in.`);
    }, { fields: { InvalidKeyName: registerScreen.name } });
  });
}

// Set when this tab found the member's last key deleted, so that their next sign-in says why it
// no longer asks for a key. Only the tab knows; it holds no secret.
const KEY_GONE = "keyward.key-deleted";

function sayIfKeyWasDeleted(me) {
  const gone = sessionStorage.getItem(KEY_GONE);
  if (!gone) return;
  sessionStorage.removeItem(KEY_GONE);
  if (gone !== `${me.org.id}/${me.user.id}` || me.mfa.key_count > 0) return;
  announce("Your security key was deleted since your last sign-in, by an admin or from another session"
    + (me.session.state === "registration_required" ? ": register a new one to continue." : ". Add a new one to turn MFA back on."));
}

// The browser reports a key that holds none of the member's credentials exactly as a cancelled
// prompt (it must not tell a page which keys exist). What keyward knows tells the cases apart: a
// member with no key left had it deleted meanwhile, and can only sign in again.
async function whyNoAssertion(error) {
  if (error?.name !== "NotAllowedError") return error;
  const me = await session.refresh();
  mfaScreen.lostKey.open = true;
  if (me.mfa.key_count === 0) {
    sessionStorage.setItem(KEY_GONE, `${me.org.id}/${me.user.id}`);
    return explained(
      "You no longer have a security key: it was deleted after you signed in, by an admin or from another "
      + "session. Select “Cancel and sign out”, then sign in again"
      + (me.org.mfa_enforced ? " and register a new key." : ". Ask an admin if you did not expect this."),
    );
  }
  return explained(
    "No registered security key answered. Either the prompt was cancelled or timed out, or the key you used is "
    + "not registered to you. Try again with a key you registered; if you have lost it, see “Lost your key?” below.",
  );
}

// --- The settings pages ------------------------------------------------------------------------

// Each page owns its timers (page.js): the page shown is entered, every other one left.
const PAGES = { personal: personalPage, organization: organizationPage };
const LINKS = { personal: frame.nav.personal, organization: frame.nav.organization };

function leavePages() {
  for (const page of Object.values(PAGES)) page.leave();
}

function isBackupSession(me) {
  return Boolean(me?.user.id.startsWith("backup:"));
}

function currentView() {
  if (!session.me?.user.admin) return "personal";
  if (isOrganizationAddress(location.hash)) return "organization";
  // Backup credentials cannot hold keys: their work is on the organization's page.
  if (location.hash !== "#/personal" && isBackupSession(session.me)) return "organization";
  return "personal";
}

async function showView() {
  if (!session.me || session.me.session.state !== "active") return;
  const view = currentView();
  for (const [name, link] of Object.entries(LINKS)) {
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [name, page] of Object.entries(PAGES)) {
    if (name !== view) page.leave();
  }
  PAGES[view].enter();
  if (view === "organization") await showOrganization(session);
  else await showPersonal(session);
}

function renderAccount() {
  const me = session.me;
  const active = me?.session.state === "active";
  frame.account.box.hidden = !me;
  frame.nav.bar.hidden = !active;
  frame.nav.organization.hidden = !(active && me.user.admin);
  if (me) {
    const role = me.user.admin ? "admin" : "member";
    frame.account.name.textContent = `${me.user.name || me.user.id} · ${role} of ${me.org.id}`;
  }
}

// --- Start ---------------------------------------------------------------------------------------

// keyward answers again: the page shown reads again what it shows; a console that could not start
// starts; any other screen only asks whether keyward answers.
async function readAgain() {
  const page = shownPage();
  if (page) await page.reload();
  else if (token.get() && !session.me) await run(null, enter);
  else await api.get("me");
}

async function start() {
  retryWith(readAgain);
  whenSessionEnds((error) => showSignIn(describe(error)));
  enableStepUp();
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
  for (const link of Object.values(LINKS)) {
    link.addEventListener("click", (event) => {
      const target = link.getAttribute("href");
      const view = currentView();
      // Organization settings are at the address of the section shown.
      const current = view === "organization" ? location.hash : `#/${view}`;
      if (target === current) {
        // The page shown is the one asked for: bring it up to date rather than do nothing.
        event.preventDefault();
        if (view === "organization") run(link, () => refreshOrganization({ announced: true }));
        else run(link, showView);
        return;
      }
      if (view === "organization" && !isOrganizationAddress(target)) {
        event.preventDefault();
        leaveNewSecret().then((leave) => {
          if (leave) location.hash = target;
        });
      }
    });
  }
  // Coming back to the tab is when a person looks: check the session then too.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") checkSession();
  });
  // Closing or reloading the tab with a new secret on screen loses it for good.
  window.addEventListener("beforeunload", (event) => {
    if (!showsNewSecret()) return;
    event.preventDefault();
    event.returnValue = "";
  });
  // The skip link moves focus without touching the fragment, which names the page shown.
  frame.skipLink.addEventListener("click", (event) => {
    event.preventDefault();
    frame.main.focus();
  });

  if (await idTokenFromRedirect()) return;
  if (!token.get()) {
    showSignIn();
    return;
  }
  watchSession();
  await run(null, enter);
  // A session that ended has already led to the sign-in screen, with its reason.
  if (!session.me && !shownScreen()) showSignIn();
}

start();
