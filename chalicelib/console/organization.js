// Organization settings → Multi-factor authentication, for admins: enforcement and its session
// clean-up, compliance, members and their keys and sessions, backup credentials, and the audit log.
// What an admin watches is kept current: on coming back to the tab, after their own actions and
// while a session clean-up runs.

import { api, segment } from "./api.js";
import { complianceSentence, compliantCount, memberStanding, watchRecount } from "./compliance.js";
import { forgetPasses, passesButton, renderEnrollmentPolicy } from "./enrollment.js";
import { AUDIT_ACTIONS, describeAction, describeFailure } from "./messages.js";
import { complianceText, modelText, showPolicy } from "./policy.js";
import { Page } from "./page.js";
import { forgetRollout, showRollout } from "./rollout.js";
import {
  $, actionsCell, announce, cell, confirmAction, emptyRow, focusScreen, h, keyId, row, run, showError, showScreen,
  trashButton, when,
} from "./ui.js";
import { forgetWebhooks, showWebhooks } from "./webhooks.js";

const POLL_INTERVAL_MS = 1000;
// While a clean-up runs, the lists (whose sessions and events it changes) every this many polls.
const POLLS_PER_LIST_RELOAD = 5;
// Coming back to the tab reloads the page's data unless it is this fresh.
const FRESH_FOR_MS = 5000;
const AUDIT_PAGE = 20;

let context = null;
let status = null;
let backupCredentials = [];
let polls = 0;
let loadedAt = 0;
let cursors = { members: null, keys: null, audit: null };
// Only the latest request for the audit log is shown: a slower, older one (a refresh started
// before a filter changed) must not overwrite it.
let auditAsked = 0;
const memberNames = new Map(); // user ID → how people know them
const keyNames = new Map(); // key ID → its name, for events that name a key by ID only
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

export async function showOrganization(session) {
  context = session;
  await Promise.all([load(), showWebhooks()]);
  showScreen("screen-organization");
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

// The page's timers (the clean-up's and the recount's polling) stop when it is left, for another
// page, by signing out or with the session; leaving takes a new backup secret off it for good.
export const organizationPage = new Page({ onLeave: () => forgetNewSecret({ focus: false }) });

// Signing out: nothing of this organization stays in the tab for whoever signs in next.
export function forgetOrganization() {
  organizationPage.leave();
  context = null;
  status = null;
  backupCredentials = [];
  cursors = { members: null, keys: null, audit: null };
  memberNames.clear();
  keyNames.clear();
  for (const list of ["members", "org-keys", "backup-list", "audit"]) $(list).replaceChildren();
  $("audit-filters").reset();
  renderMemberFilter();
  forgetPasses();
  forgetRollout();
  forgetWebhooks();
}

// Resolves to true when the page may be left: at once, unless a new secret is still on screen.
export async function leaveNewSecret() {
  if ($("backup-new").hidden) return true;
  return confirmAction({
    title: "Leave without the new secret?",
    text: `The secret of backup credentials ${$("backup-new-key-id").textContent} cannot be shown again. `
      + "Copy it and keep it somewhere safe before you go; without it, these credentials are useless.",
    confirm: "Leave anyway",
  });
}

function onOrganizationPage() {
  return context !== null && organizationPage.shown && !$("screen-organization").hidden;
}

async function load({ quiet = false } = {}) {
  const focused = focusedControl();
  const asked = ++auditAsked;
  const [, mfa, members, keys, backups, audit] = await Promise.all([
    context.refresh(),
    api.get("org/mfa"),
    api.get("org/members"),
    api.get("org/mfa/keys"),
    api.get("org/backup-credentials"),
    api.get(auditPath()),
  ]);
  renderMembers(members, { append: false });
  renderStatus(mfa);
  renderKeys(keys, { append: false });
  renderBackupCredentials(backups.backup_credentials);
  if (asked === auditAsked) renderAudit(audit, { append: false });
  // A saved policy changes which keys count: the meter and the key list are read again. A refresh
  // the admin did not ask for leaves the policy form as they are editing it.
  if (!quiet) await showPolicy({ onSaved: () => load() });
  // The roll-out card (grace period, preview, coverage filter, offboarding) likewise keeps an
  // admin's edits through a refresh they did not ask for.
  if (!quiet) await showRollout(mfa, async () => { await load(); pollInvalidation(); });
  renderUpdated();
  focused.restore();
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
  const updated = $("org-updated");
  updated.replaceChildren("Updated at ", h("time", { datetime: new Date(loadedAt).toISOString() }, timeFormat.format(new Date(loadedAt))));
}

function nameOf(userId) {
  return memberNames.get(userId) || userId;
}

// --- Enforcement -------------------------------------------------------------------------------

function isBackupSession() {
  return context.me.user.id.startsWith("backup:");
}

function renderStatus(mfa) {
  status = mfa;
  const me = context.me;
  const enforce = $("enforce");
  $("org-name").textContent = me.org.id;
  enforce.checked = mfa.enforced;
  // Enforcing without a key of one's own would lock the admin out at their next sign-in.
  const keyless = !mfa.enforced && me.mfa.key_count === 0;
  enforce.disabled = keyless;
  $("enforce-reason").hidden = !keyless;
  $("enforce-reason").textContent = !keyless ? ""
    : isBackupSession()
      ? "Backup credentials cannot enforce MFA: sign in through your identity provider, with a security key of your own."
      : "You need a security key of your own before you can enforce MFA: add one in Personal settings.";
  // What is said before enforcing is not what holds once it is done.
  $("enforce-warning").hidden = mfa.enforced;
  $("enforce-help").hidden = mfa.enforced;
  $("enforced-help").hidden = !mfa.enforced;
  enforce.setAttribute("aria-describedby", mfa.enforced ? "enforced-help enforce-reason" : "enforce-help enforce-reason");

  const since = $("enforced-since");
  since.hidden = !mfa.enforced;
  since.replaceChildren(...(mfa.enforced
    ? ["MFA is enforced since ", when(mfa.enforced_at), mfa.enforced_by ? ` (by ${nameOf(mfa.enforced_by)}).` : "."]
    : []));

  const total = mfa.members_total;
  const meter = $("compliance-meter");
  meter.max = Math.max(total, 1);
  meter.value = compliantCount(mfa) ?? 0;
  meter.low = Math.max(total, 1) - 0.5; // anything short of everyone shows as a warning
  meter.high = Math.max(total, 1) - 0.25;
  meter.optimum = Math.max(total, 1);
  const text = complianceSentence(mfa);
  watchRecount(mfa, renderStatus, organizationPage);
  meter.textContent = text;
  meter.setAttribute("aria-valuetext", text);
  $("compliance-text").textContent = text;

  renderInvalidation(mfa);
  renderEnrollmentPolicy(mfa);
}

function renderInvalidation(mfa) {
  const progress = $("invalidation");
  const invalidation = mfa.enforced ? mfa.invalidation : null;
  progress.hidden = !invalidation;
  if (!invalidation) return;
  const ended = invalidation.sessions_ended;
  const sessions = `${ended} ${ended === 1 ? "session" : "sessions"} ended`;
  if (invalidation.state === "done") {
    progress.dataset.state = "done";
    progress.replaceChildren(`Session clean-up finished: ${sessions} (`, when(invalidation.finished_at), ").");
  } else {
    progress.dataset.state = "running";
    progress.replaceChildren(`Ending every other session of the organization… ${sessions} so far.`);
  }
}

function pollInvalidation() {
  organizationPage.cancel("invalidation");
  if (status?.invalidation?.state !== "running") return;
  organizationPage.after("invalidation", POLL_INTERVAL_MS, () => run(null, async () => {
    polls += 1;
    const mfa = await api.get("org/mfa", { signal: organizationPage.signal });
    renderStatus(mfa);
    renderUpdated();
    if (mfa.invalidation?.state === "running") {
      if (polls % POLLS_PER_LIST_RELOAD === 0) await reloadLists();
      pollInvalidation();
    } else if (mfa.invalidation) {
      // The clean-up's own audit event, and members whose sessions it ended.
      await reloadLists();
      // Told only on this page: an admin who moved on meanwhile is reading another page's news.
      if (!onOrganizationPage()) return;
      announce(`Session clean-up finished: ${mfa.invalidation.sessions_ended} ${mfa.invalidation.sessions_ended === 1 ? "session" : "sessions"} ended.`,
        { near: $("invalidation") });
    }
  }));
}

function enforcementQuestion() {
  const missing = status.members_total - (compliantCount(status) ?? 0);
  const keyless = compliantCount(status) === null
    ? "Which members hold a security key the policy accepts is being recounted."
    : missing === 0
    ? "Every member has a security key."
    : `${missing} of ${status.members_total} ${status.members_total === 1 ? "member has" : "members have"} no security key `
      + "yet: they must register one at their next sign-in, so make sure they have a FIDO2 security key.";
  const backups = backupCredentials.length === 0
    ? "The organization has no backup credentials: create them first, they are the way back in when a key is lost."
    : `The organization has ${backupCredentials.length} backup ${backupCredentials.length === 1 ? "credential" : "credentials"}.`;
  return `Every other session of the organization ends at once; yours stays. ${keyless} ${backups}`;
}

async function changeEnforcement(enforce) {
  const wanted = enforce.checked;
  // The switch shows the organization's actual setting until the change is confirmed and made.
  enforce.checked = !wanted;
  const confirmed = await confirmAction(wanted
    ? { title: "Enforce MFA for everyone?", text: enforcementQuestion(), confirm: "Enforce MFA" }
    : {
      title: "Stop enforcing MFA?",
      text: "Members will be able to delete all their security keys and sign in without one. Sessions that "
        + "enforcement ended stay ended.",
      confirm: "Stop enforcing",
    });
  if (!confirmed) return;
  await run(enforce, async () => {
    const mfa = await api.put("org/mfa", { enforced: wanted });
    await context.refresh();
    renderStatus(mfa);
    announce(wanted
      ? "MFA is now enforced. Every other session of the organization is being ended."
      : "MFA is no longer enforced.");
    await reloadLists();
    pollInvalidation();
  });
  enforce.focus();
}

// --- Members, their keys and sessions ---------------------------------------------------------

function renderMembers({ members, next }, { append }) {
  cursors.members = next ?? null;
  if (!append) memberNames.clear();
  for (const member of members) memberNames.set(member.id, member.name || member.id);
  const rows = members.map((member) => {
    const name = member.name || member.id;
    const own = member.id === context.me.user.id;
    return row({ dataset: { userId: member.id } },
      cell("Member", h("span", { class: "member-name" }, name),
        h("span", { class: "muted block" }, member.email || member.id)),
      cell("Role", member.admin ? "Admin" : "Member"),
      cell("Security keys", String(member.key_count)),
      cell("MFA", memberStanding(member)),
      cell("Last sign-in", when(member.last_login_at)),
      actionsCell(passesButton(member), own ? h("span", { class: "badge" }, "You") : h("button", {
        type: "button", class: "quiet", "aria-label": `End the sessions of ${name}`,
        onclick: (event) => endMemberSessions(event.currentTarget, member.id, name),
      }, "End sessions")),
    );
  });
  const body = $("members");
  if (append) body.append(...rows);
  else body.replaceChildren(...(rows.length ? rows : [emptyRow(6, "No members yet.")]));
  $("members-more").hidden = !cursors.members;
  renderMemberFilter();
  return rows;
}

async function endMemberSessions(button, userId, name) {
  const confirmed = await confirmAction({
    title: `End every session of ${name}?`,
    text: `${name} is signed out everywhere at once and must sign in again (with a security key, if they have one). `
      + "Nothing else changes.",
    confirm: "End sessions",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/members/${segment(userId)}/sessions`);
    await load();
    announce(`Every session of ${name} was ended.`);
  });
}

function renderKeys({ keys, next }, { append }) {
  cursors.keys = next ?? null;
  if (!append) keyNames.clear();
  for (const key of keys) keyNames.set(key.id, key.name);
  const rows = keys.map((key) => {
    const owner = key.user.name || key.user.id;
    return row({ dataset: { keyId: key.id } },
      cell("Member", owner),
      cell("Name", key.name),
      cell("Key ID", keyId(key.id)),
      cell("Model", modelText(key)),
      cell("Policy", complianceText(key)),
      cell("Created", when(key.created_at)),
      cell("Last used", when(key.last_used_at)),
      actionsCell(trashButton({
        label: `Delete ${key.name} of ${owner}`,
        onclick: (event) => deleteMemberKey(event.currentTarget, key, owner),
      })),
    );
  });
  const body = $("org-keys");
  if (append) body.append(...rows);
  else body.replaceChildren(...(rows.length ? rows : [emptyRow(8, "No member has a security key yet.")]));
  $("org-keys-more").hidden = !cursors.keys;
  return rows;
}

async function deleteMemberKey(button, key, owner) {
  const endSessions = { label: `End every session of ${owner} too`, checked: false };
  const confirmed = await confirmAction({
    title: `Delete “${key.name}” of ${owner}?`,
    text: `${owner} will no longer be able to sign in with this security key (key ID ${key.id}), and their sessions `
      + "that passed the security key check with it end. If it is their last key and MFA is enforced, they must "
      + "register a new key at their next sign-in.",
    confirm: "Delete key",
    choice: endSessions,
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/members/${segment(key.user.id)}/mfa/keys/${segment(key.id)}`);
    if (endSessions.checked) await api.delete(`org/members/${segment(key.user.id)}/sessions`);
    await load();
    announce(`Security key “${key.name}” of ${owner} was deleted.`
      + (endSessions.checked ? ` Every session of ${owner} was ended.` : ""));
    $("org-keys-title").setAttribute("tabindex", "-1");
    $("org-keys-title").focus();
  });
}

async function reloadLists() {
  const asked = ++auditAsked;
  const signal = organizationPage.signal;
  const [members, keys, audit] = await Promise.all([
    api.get("org/members", { signal }), api.get("org/mfa/keys", { signal }), api.get(auditPath(), { signal }),
  ]);
  renderMembers(members, { append: false });
  renderKeys(keys, { append: false });
  if (asked === auditAsked) renderAudit(audit, { append: false });
  renderUpdated();
}

// --- Backup credentials ------------------------------------------------------------------------

function renderBackupCredentials(credentials) {
  backupCredentials = credentials;
  const rows = credentials.map((credential) => row({},
    cell("Key ID", keyId(credential.key_id)),
    cell("Created", when(credential.created_at)),
    cell("Created by", nameOf(credential.created_by)),
    cell("Last used", when(credential.last_used_at)),
    actionsCell(trashButton({
      label: `Delete backup credentials ${credential.key_id}`,
      onclick: (event) => deleteBackupCredentials(event.currentTarget, credential),
    })),
  ));
  $("backup-list").replaceChildren(...(rows.length ? rows : [emptyRow(5, "No backup credentials yet.")]));
  // A backup session may not make more of itself: the button says so rather than fail.
  $("backup-create").disabled = isBackupSession();
  $("backup-create-reason").hidden = !isBackupSession();
}

async function createBackupCredentials(button) {
  if (!$("backup-new").hidden) {
    const replace = await confirmAction({
      title: "Create other backup credentials?",
      text: `The secret of ${$("backup-new-key-id").textContent} on screen cannot be shown again. Copy it first; `
        + "the credentials themselves stay valid until you delete them.",
      confirm: "Create others",
      danger: false,
    });
    if (!replace) return;
  }
  await run(button, async () => {
    const created = await api.post("org/backup-credentials");
    $("backup-new-key-id").textContent = created.key_id;
    $("backup-new-secret").textContent = created.secret;
    const box = $("backup-new");
    box.hidden = false;
    const { backup_credentials } = await api.get("org/backup-credentials");
    renderBackupCredentials(backup_credentials);
    announce("Backup credentials created. Copy the secret now: it is shown only once.", { near: $("backup-new-title") });
    box.focus();
  });
}

function forgetNewSecret({ focus = true } = {}) {
  // Once dismissed, the secret is gone from the page for good.
  const shown = !$("backup-new").hidden;
  $("backup-new-secret").textContent = "";
  $("backup-new-key-id").textContent = "";
  $("backup-new").hidden = true;
  if (shown && focus) $("backup-create").focus();
}

async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    announce(`${what} copied to the clipboard.`);
  } catch {
    showError("The browser did not allow copying. Select the text and copy it yourself.");
  }
}

async function deleteBackupCredentials(button, credential) {
  const confirmed = await confirmAction({
    title: `Delete backup credentials ${credential.key_id}?`,
    text: "Nobody will be able to sign in with them any more, and any session opened with them ends.",
    confirm: "Delete backup credentials",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/backup-credentials/${segment(credential.key_id)}`);
    await load();
    announce(`Backup credentials ${credential.key_id} were deleted.`);
    if (!$("backup-create").disabled) $("backup-create").focus();
    else focusScreen();
  });
}

// --- Audit log ---------------------------------------------------------------------------------

function auditPath() {
  const query = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  if ($("audit-action").value) query.set("action", $("audit-action").value);
  if ($("audit-member").value) query.set("user_id", $("audit-member").value);
  return `org/audit?${query}`;
}

function renderMemberFilter() {
  const select = $("audit-member");
  const chosen = select.value;
  const options = [...memberNames].map(([id, name]) => h("option", { value: id }, name === id ? id : `${name} (${id})`));
  // A member filtered on stays offered even when their page of the list is not loaded.
  if (chosen && !memberNames.has(chosen)) options.push(h("option", { value: chosen }, chosen));
  select.replaceChildren(h("option", { value: "" }, "Every member"), ...options);
  select.value = chosen;
}

// What an event was about, in names: the member and, for a key, the key's name.
function about(event) {
  const member = event.user_id ? nameOf(event.user_id) : null;
  const keyName = event.details?.name ?? keyNames.get(event.target);
  if ((event.action.startsWith("key.") || event.action === "mfa.succeeded") && keyName) return member ? `“${keyName}” of ${member}` : `“${keyName}”`;
  if (event.action.startsWith("backup_credentials.")) return event.target ?? "";
  return member ?? (event.target === context.me.org.id ? "The organization" : event.target ?? "");
}

function what(event) {
  const done = describeAction(event.action);
  if (event.action === "mfa.failed" && event.details?.reason) return `${done}: ${describeFailure(event.details.reason)}`;
  if (event.details?.by === "admin" && event.action === "key.deleted") return `${done} by an admin`;
  return done;
}

// Who acted, by the kind the log records beside the name: an IdP may name a member "operator",
// "keyward" or "backup credentials …", so only a member is shown by name alone; every other kind
// is shown as a badge, which no member's name can make.
const ACTOR_BADGES = { operator: "Operator", system: "keyward", backup_credentials: "Backup credentials" };

function actor(event) {
  const badge = ACTOR_BADGES[event.actor_kind];
  if (!badge) return [nameOf(event.actor)];
  const shown = [h("span", { class: "badge" }, badge)];
  // Backup credentials are named by their key ID, which tells one set from another.
  if (event.actor_kind === "backup_credentials") shown.push(" ", event.actor.replace(/^backup credentials /, ""));
  return shown;
}

function renderAudit({ events, next }, { append }) {
  cursors.audit = next ?? null;
  const rows = events.map((event) => row({},
    cell("When", when(event.at)),
    cell("Who", ...actor(event)),
    cell("What", what(event)),
    cell("About", about(event)),
    cell("From", event.source_ip ?? "—"),
  ));
  const body = $("audit");
  const filtered = $("audit-action").value || $("audit-member").value;
  if (append) body.append(...rows);
  else body.replaceChildren(...(rows.length ? rows : [emptyRow(5, filtered ? "No events match these filters." : "Nothing recorded yet.")]));
  $("audit-more").hidden = !cursors.audit;
  return rows;
}

async function filterAudit(control) {
  await run(control, async () => {
    const asked = ++auditAsked;
    const audit = await api.get(auditPath());
    if (asked === auditAsked) renderAudit(audit, { append: false });
    renderUpdated();
  });
}

// The next page of a list; focus moves to its first new row, since the button may be gone.
async function loadMore(kind, path, render) {
  const page = await api.get(`${path}${path.includes("?") ? "&" : "?"}next=${encodeURIComponent(cursors[kind])}`);
  const [first] = render(page, { append: true });
  if (first) {
    first.setAttribute("tabindex", "-1");
    first.focus();
  }
}

for (const action of AUDIT_ACTIONS) $("audit-action").append(h("option", { value: action }, describeAction(action)));

$("enforce").addEventListener("change", (event) => changeEnforcement(event.currentTarget));
$("members-more").addEventListener("click", (event) => run(event.currentTarget, () => loadMore("members", "org/members", renderMembers)));
$("org-keys-more").addEventListener("click", (event) => run(event.currentTarget, () => loadMore("keys", "org/mfa/keys", renderKeys)));
$("audit-more").addEventListener("click", (event) => run(event.currentTarget, () => loadMore("audit", auditPath(), renderAudit)));
$("audit-action").addEventListener("change", (event) => filterAudit(event.currentTarget));
$("audit-member").addEventListener("change", (event) => filterAudit(event.currentTarget));
$("audit-filters").addEventListener("submit", (event) => event.preventDefault());
$("backup-create").addEventListener("click", (event) => createBackupCredentials(event.currentTarget));
$("backup-copy").addEventListener("click", () => copy($("backup-new-secret").textContent, "The secret was"));
$("backup-copy-both").addEventListener("click", () => copy(
  `Key ID: ${$("backup-new-key-id").textContent}\nSecret: ${$("backup-new-secret").textContent}`, "The key ID and secret were",
));
$("backup-done").addEventListener("click", () => forgetNewSecret());
$("org-refresh").addEventListener("click", (event) => run(event.currentTarget, () => refreshOrganization({ announced: true })));

// Coming back to the tab: what changed meanwhile (a member registered a key) shows without a click.
function refreshWhenSeen() {
  if (document.visibilityState !== "visible" || !onOrganizationPage() || $("confirm").open) return;
  if (Date.now() - loadedAt < FRESH_FOR_MS) return;
  run(null, () => refreshOrganization({ quiet: true }));
}
window.addEventListener("focus", refreshWhenSeen);
document.addEventListener("visibilitychange", refreshWhenSeen);
