// Step-up: keyward asks for a recent security-key check before sensitive changes (adding or
// deleting a key, disabling MFA, every admin change). When the API answers
// ReauthenticationRequired, the console asks for the security key, records the check with
// POST auth/reauth/*, and the API layer retries the change once.

import { ApiError, api, whenReauthenticationRequired } from "./api.js";
import { confirmAction } from "./ui.js";
import { getAssertion } from "./webauthn.js";

// Refusals of the step-up itself that mean "there is no key to step up with": the member has
// none, or the session was opened with backup credentials. Only a fresh sign-in helps then.
const NO_KEY_TO_STEP_UP_WITH = new Set(["SecurityKeyRequired", "NotForBackupSessions"]);

async function stepUp(refusal) {
  let options;
  try {
    options = await api.post("auth/reauth/options");
  } catch (error) {
    if (error instanceof ApiError && NO_KEY_TO_STEP_UP_WITH.has(error.code)) {
      throw new ApiError({
        status: refusal.status, code: refusal.code,
        message: "This change needs a recent sign-in. Sign out and sign in again, then retry it.",
      });
    }
    throw error;
  }
  const confirmed = await confirmAction({
    title: "Confirm with your security key",
    text: "This change needs a fresh check of your security key. Nothing has been changed yet.",
    confirm: "Use security key",
    danger: false,
  });
  if (!confirmed) {
    throw new ApiError({
      status: refusal.status, code: refusal.code,
      message: "This change needs a fresh check of your security key. Nothing was changed.",
    });
  }
  const credential = await getAssertion(options.publicKey);
  await api.post("auth/reauth/verify", { challenge_id: options.challenge_id, credential });
  return true;
}

export function enableStepUp() {
  whenReauthenticationRequired(stepUp);
}
