// Organization settings → Multi-factor authentication: where enforcement stands (enforcing is the
// roll-out flow's, rollout.js), the session clean-up it starts (polled every second while it runs),
// the enrolment-pass switch's state, and compliance.

import { api } from "./api.js";
import { complianceChanged, renderMeter, watchRecount } from "./compliance.js";
import { renderEnrollmentPolicy } from "./enrollment.js";
import { enforcementState } from "./enforcement-state.js";
import { showEnforcement } from "./organization-backup.js";
import { organization, organizationPage, screen } from "./organization-screen.js";
import { WORDS, counted } from "./plural.js";
import { openRollout, renderRolloutState } from "./rollout.js";
import { announce, run, when } from "./ui.js";

const POLL_INTERVAL_MS = 1000;
// While a clean-up runs, the lists (whose sessions and events it changes) every this many polls.
const POLLS_PER_LIST_RELOAD = 5;
const elements = screen.enforcement;
let status = null; // the organization's GET /org/mfa, as last shown
let polls = 0;

export function renderStatus(mfa) {
  status = mfa;
  // The overview only says where things stand: enforcing, its grace period and turning it off are
  // done in one place, the roll-out flow, which says it in the same words.
  elements.state.replaceChildren(...enforcementState(mfa));
  elements.open.textContent = mfa.enforced ? "Manage enforcement" : "Roll out enforcement";
  renderRolloutState(mfa);

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

elements.open.addEventListener("click", () => openRollout());
