// Organization settings → Multi-factor authentication: enforcing MFA and the session clean-up it
// starts (polled every second while it runs), the enrolment-pass switch's state, and compliance.

import { api } from "./api.js";
import { complianceChanged, compliantCount, renderMeter, watchRecount } from "./compliance.js";
import { renderEnrollmentPolicy } from "./enrollment.js";
import { askBeforeEnforcing, loadChecklist } from "./enforcement-checklist.js";
import { createBackupCredentialsFirst, showEnforcement } from "./organization-backup.js";
import { nameOf } from "./organization-members.js";
import { WORDS, counted } from "./plural.js";
import { isBackupSession, isYou, organization, organizationPage, screen } from "./organization-screen.js";
import { announce, confirmAction, run, when } from "./ui.js";

const POLL_INTERVAL_MS = 1000;
// While a clean-up runs, the lists (whose sessions and events it changes) every this many polls.
const POLLS_PER_LIST_RELOAD = 5;
const elements = screen.enforcement;
let status = null; // the organization's GET /org/mfa, as last shown
let polls = 0;

export function renderStatus(mfa) {
  status = mfa;
  const me = organization.session.me;
  const enforce = elements.toggle;
  screen.orgName.textContent = me.org.id;
  enforce.checked = mfa.enforced;
  // Enforcing without a key of one's own would lock the admin out at their next sign-in.
  const keyless = !mfa.enforced && me.mfa.key_count === 0;
  enforce.disabled = keyless;
  elements.reason.hidden = !keyless;
  elements.reason.textContent = !keyless ? ""
    : isBackupSession()
      ? "Backup credentials cannot enforce MFA: sign in through your identity provider, with a security key of your own."
      : "You need a security key of your own before you can enforce MFA: add one in Personal settings.";
  // What is said before enforcing is not what holds once it is done (the advice to create backup
  // credentials first follows them too: organization-backup.js).
  elements.help.hidden = mfa.enforced;
  elements.enforcedHelp.hidden = !mfa.enforced;
  enforce.setAttribute("aria-describedby", mfa.enforced ? "enforced-help enforce-reason" : "enforce-help enforce-reason");

  const since = elements.since;
  since.hidden = !mfa.enforced;
  since.replaceChildren(...(mfa.enforced
    ? ["MFA is enforced since ", when(mfa.enforced_at), mfa.enforced_by ? ` (by ${isYou(mfa.enforced_by) ? "you" : nameOf(mfa.enforced_by)}).` : "."]
    : []));

  // A recount that started or ended is shown by the meter, the members and the roll-out at once.
  if (complianceChanged(mfa)) run(null, () => organization.showCoverage(mfa));
  else renderMeter(mfa);
  watchRecount(mfa, renderStatus, organizationPage);

  renderInvalidation(mfa);
  renderEnrollmentPolicy(mfa);
  showEnforcement(mfa.enforced);
}

export function forgetStatus() {
  status = null;
}

function renderInvalidation(mfa) {
  const progress = elements.invalidation;
  const invalidation = mfa.enforced ? mfa.invalidation : null;
  progress.hidden = !invalidation;
  if (!invalidation) return;
  const ended = invalidation.sessions_ended;
  const sessions = `${counted(ended, WORDS.session)} ended`;
  if (invalidation.state === "done") {
    progress.dataset.state = "done";
    progress.replaceChildren(`Session clean-up finished: ${sessions} (`, when(invalidation.finished_at), ").");
  } else {
    progress.dataset.state = "running";
    progress.replaceChildren(`Ending every other session of the organization… ${sessions} so far.`);
  }
}

// While the clean-up runs, ask every second; the page (page.js) owns the timer.
export function pollInvalidation() {
  organizationPage.cancel("invalidation");
  if (status?.invalidation?.state !== "running") return;
  organizationPage.after("invalidation", POLL_INTERVAL_MS, () => run(null, async () => {
    polls += 1;
    const mfa = await api.get("org/mfa", { signal: organizationPage.signal });
    renderStatus(mfa);
    organization.loaded();
    if (mfa.invalidation?.state === "running") {
      if (polls % POLLS_PER_LIST_RELOAD === 0) await organization.reloadLists();
      pollInvalidation();
    } else if (mfa.invalidation) {
      // The clean-up's own audit event, and members whose sessions it ended.
      await organization.reloadLists();
      // Told only on this page: an admin who moved on meanwhile is reading another page's news.
      if (!organizationPage.shown || screen.root.hidden) return;
      announce(`Session clean-up finished: ${counted(mfa.invalidation.sessions_ended, WORDS.session)} ended.`,
        { near: elements.invalidation });
    }
  }));
}

async function askBeforeEnforcingNow(enforce) {
  const found = await run(enforce, loadChecklist);
  if (!found) return null;
  return askBeforeEnforcing(found, {
    consequence: "Members without a security key must register one at their next sign-in.",
    createFirst: createBackupCredentialsFirst,
  });
}

async function askBeforeRelaxing() {
  const confirmed = await confirmAction({
    title: "Stop enforcing MFA?",
    text: "Members will be able to delete all their security keys and sign in without one. Sessions that "
      + "enforcement ended stay ended.",
    confirm: "Stop enforcing",
  });
  return confirmed ? {} : null;
}

async function changeEnforcement(enforce) {
  const wanted = enforce.checked;
  // The switch shows the organization's actual setting until the change is confirmed and made.
  enforce.checked = !wanted;
  // Enforcing: the pre-flight checklist, and what it adds to the request (the acknowledgement of
  // enforcing without backup credentials).
  const along = wanted ? await askBeforeEnforcingNow(enforce) : await askBeforeRelaxing();
  if (!along) return;
  await run(enforce, async () => {
    const mfa = await api.put("org/mfa", { enforced: wanted, ...along });
    await organization.session.refresh();
    renderStatus(mfa);
    announce(wanted
      ? "MFA is now enforced. Every other session of the organization is being ended."
      : "MFA is no longer enforced.");
    await organization.reloadLists();
    pollInvalidation();
  });
  enforce.focus();
}

elements.toggle.addEventListener("change", (event) => changeEnforcement(event.currentTarget));
