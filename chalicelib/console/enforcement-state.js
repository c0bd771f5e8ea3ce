// The organization's enforcement in words, said the same way by the overview and by the roll-out
// flow: whether MFA is enforced, since when and by whom, how long members without a security key
// still have, and how many of them there are.

import { nameOf } from "./organization-members.js";
import { isYou } from "./organization-screen.js";
import { WORDS, partOf } from "./plural.js";
import { when } from "./ui.js";

let withoutKey = null; // GET /org/mfa/preview's figures, as last read

// A preview read with the page, or by the roll-out flow: its figures are the latest.
export function rememberWithoutKey(found) {
  withoutKey = { members_without_key: found.members_without_key, members_total: found.members_total };
}

export function forgetWithoutKey() {
  withoutKey = null;
}

// Whether members without a key may still work without registering one.
export function graceRunning(mfa) {
  return Boolean(mfa.enforced && mfa.registration_due_at && Date.parse(mfa.registration_due_at) > Date.now());
}

// The state as a sentence or two: text and <time> elements, for replaceChildren.
export function enforcementState(mfa) {
  if (!mfa.enforced) {
    return ["MFA is not enforced: members may sign in without a security key."];
  }
  const by = mfa.enforced_by ? ` (by ${isYou(mfa.enforced_by) ? "you" : nameOf(mfa.enforced_by)})` : "";
  const since = ["MFA is enforced since ", when(mfa.enforced_at), `${by}. `];
  const due = mfa.registration_due_at;
  const deadline = graceRunning(mfa)
    ? ["Members without a security key have until ", when(due), " to register one."]
    : due
      ? ["The grace period ended ", when(due), ": members without a security key must register one to keep working."]
      : ["Members without a security key must register one at their next sign-in."];
  return [...since, ...deadline, ...stillWithoutKey()];
}

function stillWithoutKey() {
  if (!withoutKey) return [];
  const { members_without_key: without, members_total: total } = withoutKey;
  return without === 0
    ? [" Every member has a security key."]
    : [` ${partOf(without, total, WORDS.member, WORDS.has)} no security key yet.`];
}
