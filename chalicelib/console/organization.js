// Organization settings, for admins: the page and how it stays current — on coming back to the
// tab, after the admin's own actions and while a session clean-up runs. Its cards are modules of
// their own: enforcement (organization-enforcement.js), members, keys, backup credentials, relying
// parties and the audit log; which section shows which card, and at which address, is
// organization-sections.js; the screen's elements are looked up in organization-screen.js.

import { api } from "./api.js";
import { forgetCompliance, showCompliance } from "./compliance.js";
import { checklistOpen } from "./enforcement-checklist.js";
import { forgetWithoutKey, rememberWithoutKey } from "./enforcement-state.js";
import { forgetPasses } from "./enrollment.js";
import { forgetAudit, loadAudit } from "./organization-audit.js";
import { forgetBackupCredentials, renderBackupCredentials } from "./organization-backup.js";
import { forgetStatus, pollInvalidation, renderStatus } from "./organization-enforcement.js";
import { forgetKeys, keysPath, renderKeys } from "./organization-keys.js";
import { forgetMember, showMember } from "./organization-member.js";
import { forgetMembers, membersPath, renderMembers } from "./organization-members.js";
import { forgetOverview, renderOverview } from "./organization-overview.js";
import { forgetRelyingParties, showRelyingParties } from "./organization-relying-parties.js";
import { organization, organizationPage, screen } from "./organization-screen.js";
import { forgetSection, showSection, shownMember } from "./organization-sections.js";
import { showPolicy } from "./policy.js";
import { forgetRollout, loadCoverageMembers, showRollout } from "./rollout.js";
import { announce, frame, h, run, showScreen } from "./ui.js";
import { forgetWebhooks, showWebhooks } from "./webhooks.js";

export { leaveNewSecret, showsNewSecret } from "./organization-backup.js";
export { organizationPage } from "./organization-screen.js";

// Coming back to the tab reloads the page's data unless it is this fresh.
const FRESH_FOR_MS = 5000;

let loadedAt = 0;
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

// Opens the organization page at the section its address names; a move from one section to
// another (the page already shown) shows that section and reads nothing again.
export async function showOrganization(session) {
  if (onOrganizationPage()) {
    await showSection({ focus: true });
    return;
  }
  organization.session = session;
  await Promise.all([load(), showWebhooks(), showRelyingParties()]);
  showScreen("screen-organization");
  await showSection();
  // Opened while a clean-up runs (e.g. reloaded right after enforcing): keep showing its progress.
  pollInvalidation();
}

// Reloads what the page shows without moving the reader: Refresh, the current nav item, the tab
// coming back into view.
export async function refreshOrganization({ announced = false, quiet = false } = {}) {
  await load({ quiet });
  pollInvalidation();
  if (announced) announce(`Organization settings updated at ${timeFormat.format(new Date(loadedAt))}.`);
}

// Signing out: nothing of this organization stays in the tab for whoever signs in next.
export function forgetOrganization() {
  organizationPage.leave();
  organization.session = null;
  forgetSection();
  forgetOverview();
  forgetMember();
  forgetStatus();
  forgetWithoutKey();
  forgetCompliance();
  forgetMembers();
  forgetKeys();
  forgetBackupCredentials();
  forgetAudit();
  forgetPasses();
  forgetRollout();
  forgetWebhooks();
  forgetRelyingParties();
}

function onOrganizationPage() {
  return organization.session !== null && organizationPage.shown && !screen.root.hidden;
}

async function load({ quiet = false } = {}) {
  const { session } = organization;
  const focused = focusedControl();
  const [, mfa, members, keys, backups, audit, coverage, preview] = await Promise.all([
    session.refresh(),
    api.get("org/mfa"),
    api.get(membersPath()),
    api.get(keysPath()),
    api.get("org/backup-credentials"),
    loadAudit(),
    loadCoverageMembers(),
    api.get("org/mfa/preview"),
  ]);
  // Signed out meanwhile (a reload the admin did not ask for may still be under way): nothing of
  // this organization is shown to whoever is at the tab now.
  if (organization.session !== session) return;
  rememberWithoutKey(preview);
  // Every place of coverage shows this answer's compliance state (compliance.js).
  showCompliance(mfa);
  renderMembers(members, { append: false });
  renderStatus(mfa);
  renderKeys(keys, { append: false });
  renderBackupCredentials(backups.backup_credentials);
  renderOverview({ mfa, backups: backups.backup_credentials, preview });
  audit();
  coverage();
  // A saved policy changes which keys count: the meter and the key list are read again. A refresh
  // the admin did not ask for leaves the policy form as they are editing it.
  if (!quiet) await showPolicy({ onSaved: () => load() });
  // The roll-out card (grace period, preview, coverage filter, offboarding) likewise keeps an
  // admin's edits through a refresh they did not ask for; its list of members is read above.
  // After its own changes (enforcing, offboarding) the page is read again quietly: the policy
  // form an admin may be editing meanwhile stays as it is.
  if (!quiet) await showRollout(mfa, async () => { await load({ quiet: true }); pollInvalidation(); });
  // A member's page shown reads their keys, sessions and passes again too.
  if (shownMember() !== null) await showMember(shownMember());
  renderUpdated();
  focused.restore();
}

// A recount started or ended (`mfa` says so): the meter, the members' standing and the roll-out
// list are read and shown together, so that no place shows figures while another says they are
// being recounted.
async function showCoverage(mfa) {
  const signal = organizationPage.signal;
  const [members, coverage] = await Promise.all([api.get(membersPath(), { signal }), loadCoverageMembers({ signal })]);
  showCompliance(mfa);
  renderStatus(mfa);
  renderOverview({ mfa });
  renderMembers(members, { append: false });
  coverage();
  renderUpdated();
}

// The lists a session clean-up changes (their sessions and events); aborted when the page is left.
async function reloadLists() {
  const signal = organizationPage.signal;
  const [members, keys, audit] = await Promise.all([
    api.get(membersPath(), { signal }), api.get(keysPath(), { signal }), loadAudit({ signal }),
  ]);
  renderMembers(members, { append: false });
  renderKeys(keys, { append: false });
  audit();
  renderUpdated();
}

// A row re-rendered under the reader's focus: focus goes to its successor with the same name.
function focusedControl() {
  const element = document.activeElement;
  const label = element?.getAttribute?.("aria-label");
  const list = element?.closest?.("tbody");
  return {
    restore() {
      if (!element || element.isConnected || !list) return;
      const again = label && [...list.querySelectorAll("button")].find((button) => button.getAttribute("aria-label") === label);
      if (again) again.focus();
      else list.closest("section")?.querySelector("h2")?.focus();
    },
  };
}

function renderUpdated() {
  loadedAt = Date.now();
  screen.updated.replaceChildren("Updated at ", h("time", { datetime: new Date(loadedAt).toISOString() }, timeFormat.format(new Date(loadedAt))));
}

organization.reload = () => load();
organization.reloadLists = reloadLists;
organization.showCoverage = showCoverage;
// After a refusal, or when keyward answers again: what the page shows, keeping the admin's edits.
organizationPage.reloadsWith(() => refreshOrganization({ quiet: true }));
organization.loaded = renderUpdated;

// The link of the section shown brings it up to date rather than do nothing, as the settings
// pages' own links do.
for (const link of screen.sections.links) {
  link.addEventListener("click", (event) => {
    if (link.getAttribute("href") !== location.hash) return;
    event.preventDefault();
    run(link, () => refreshOrganization({ announced: true }));
  });
}

screen.refresh.addEventListener("click", (event) => run(event.currentTarget, () => refreshOrganization({ announced: true })));

// Coming back to the tab: what changed meanwhile (a member registered a key) shows without a click.
function refreshWhenSeen() {
  if (document.visibilityState !== "visible" || !onOrganizationPage() || frame.confirm.dialog.open || checklistOpen()) return;
  if (Date.now() - loadedAt < FRESH_FOR_MS) return;
  run(null, () => refreshOrganization({ quiet: true }));
}
window.addEventListener("focus", refreshWhenSeen);
document.addEventListener("visibilitychange", refreshWhenSeen);
