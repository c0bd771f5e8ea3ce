// Step-up: keyward asks for a recent security-key check before sensitive changes (adding or
// deleting a key, disabling MFA, every admin change). When the API answers
// ReauthenticationRequired, the console names the change, asks for a security key already
// registered to the member, records the check with POST auth/reauth/*, and the API layer retries
// the change once.

import { ApiError, api, whenReauthenticationRequired } from "./api.js";
import { explained } from "./messages.js";
import { WORDS, counted } from "./plural.js";
import { confirmAction } from "./ui.js";
import { getAssertion } from "./webauthn.js";

// Refusals of the step-up itself that mean "there is no key to step up with": the member has
// none, or the session was opened with backup credentials. Only a fresh sign-in helps then.
const NO_KEY_TO_STEP_UP_WITH = new Set(["SecurityKeyRequired", "NotForBackupSessions"]);

// The sensitive changes (docs/api.md, Step-up) in words, for a request whose caller did not name
// its change: method, path pattern, and the words (given the path's segments and the body).
const CHANGES = [
  ["POST", /^me\/mfa\/keys(\/options)?$/, () => "add a security key"],
  ["DELETE", /^me\/mfa\/keys\/[^/]+$/, () => "delete one of your security keys"],
  ["DELETE", /^me\/mfa$/, () => "disable MFA and delete all your security keys"],
  ["PUT", /^org\/mfa$/, (_, body) => {
    // Changing the grace period of the enforcement in force sends it without `enforced`.
    if (body?.enforced === undefined && body?.grace_period_hours === 0) return "end the grace period of MFA enforcement now";
    if (body?.enforced === undefined && body?.grace_period_hours > 0) {
      return `change the grace period of MFA enforcement to ${counted(body.grace_period_hours, WORDS.hour)}`;
    }
    if (body?.enforced === true && body.grace_period_hours > 0) {
      return `enforce MFA for everyone in the organization, with a grace period of ${counted(body.grace_period_hours, WORDS.hour)}`;
    }
    if (body?.enforced === true) return "enforce MFA for everyone in the organization";
    if (body?.enforced === false) return "stop enforcing MFA";
    return "change who may register a first security key";
  }],
  ["PUT", /^org\/mfa\/policy$/, () => "change the organization's authenticator policy"],
  ["DELETE", /^org\/members\/([^/]+)\/mfa\/keys\/[^/]+$/, ([member]) => `delete a security key of ${member}`],
  ["DELETE", /^org\/members\/([^/]+)$/, ([member]) => `offboard ${member}`],
  ["DELETE", /^org\/members\/([^/]+)\/sessions$/, ([member]) => `end every session of ${member}`],
  ["POST", /^org\/members\/([^/]+)\/enrollment-passes$/, ([member]) => `issue an enrolment pass to ${member}`],
  ["DELETE", /^org\/members\/([^/]+)\/enrollment-passes\/[^/]+$/, ([member]) => `revoke an enrolment pass of ${member}`],
  ["POST", /^org\/webhooks$/, () => "add a webhook"],
  ["PATCH", /^org\/webhooks\/[^/]+$/, () => "change a webhook"],
  ["DELETE", /^org\/webhooks\/[^/]+$/, () => "delete a webhook"],
  ["POST", /^org\/backup-credentials$/, () => "create backup credentials"],
  ["DELETE", /^org\/backup-credentials\/([^/]+)$/, ([keyId]) => `delete backup credentials ${keyId}`],
];

function changeOf({ method, path, body, change }) {
  if (change) return change;
  const route = path.split("?")[0];
  for (const [known, pattern, words] of CHANGES) {
    const found = known === method && pattern.exec(route);
    if (found) return words(found.slice(1).map(decodeURIComponent), body);
  }
  return "make this change";
}

// Adding a key is where a member holds a new key in hand: the check needs one of the others.
function isAddingKey({ method, path }) {
  return method === "POST" && /^me\/mfa\/keys(\/options)?$/.test(path);
}

const anyOf = new Intl.ListFormat("en", { type: "disjunction" });

// The names of the member's registered keys, the ones the check accepts; none if the list cannot
// be read (the check still works, it is only less specific).
async function registeredKeyNames() {
  try {
    const { keys } = await api.get("me/mfa/keys");
    return keys.map((key) => `“${key.name}”`);
  } catch {
    return [];
  }
}

async function stepUp(refusal, request) {
  let options;
  let names;
  try {
    [options, names] = await Promise.all([api.post("auth/reauth/options"), registeredKeyNames()]);
  } catch (error) {
    if (error instanceof ApiError && NO_KEY_TO_STEP_UP_WITH.has(error.code)) {
      throw new ApiError({
        status: refusal.status, code: refusal.code,
        message: "This change needs a recent sign-in. Sign out and sign in again, then retry it.",
      });
    }
    throw error;
  }
  const which = names.length ? ` (${anyOf.format(names)})` : "";
  const adding = isAddingKey(request);
  const confirmed = await confirmAction({
    title: "Confirm with your security key",
    text: `To ${changeOf(request)}, keyward needs a fresh check of a security key already registered to your `
      + `account${which}.`
      + (adding ? " Use a key you already have, not the new one you are adding." : "")
      + " Nothing has been changed yet.",
    confirm: "Use security key",
    danger: false,
  });
  if (!confirmed) {
    throw new ApiError({
      status: refusal.status, code: refusal.code,
      message: "This change needs a fresh check of your security key. Nothing was changed.",
    });
  }
  let credential;
  try {
    credential = await getAssertion(options.publicKey);
  } catch (error) {
    // The browser reports a key that holds none of the allowed credentials exactly as a cancelled
    // or timed-out prompt (a page must not learn which keys exist), so the sentence names both.
    if (error?.name !== "NotAllowedError") throw error;
    throw explained(
      "No registered security key answered: either the key you used is not one of your registered keys"
      + (adding ? " (a new key can only confirm once it is added)" : "")
      + ", or the check was cancelled or timed out. Nothing was changed — try again with a key you registered.",
    );
  }
  await api.post("auth/reauth/verify", { challenge_id: options.challenge_id, credential });
  return true;
}

export function enableStepUp() {
  whenReauthenticationRequired(stepUp);
}
