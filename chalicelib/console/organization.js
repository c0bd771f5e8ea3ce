// Organization settings → Multi-factor authentication, for admins: enforcement and its session
// clean-up, compliance, members and their keys, backup credentials, and the audit log.

import { api, segment } from "./api.js";
import { describeAction } from "./messages.js";
import {
  $, actionsCell, announce, cell, confirmAction, emptyRow, h, keyId, row, run, showError, showScreen, trashButton, when,
} from "./ui.js";
import { showWebhooks } from "./webhooks.js";

const POLL_INTERVAL_MS = 1000;
const AUDIT_PAGE = 20;

let context = null;
let status = null;
let poller = null;
let cursors = { members: null, keys: null, audit: null };

export async function showOrganization(session) {
  context = session;
  await Promise.all([load(), showWebhooks()]);
  showScreen("screen-organization");
  // Opened while a clean-up runs (e.g. reloaded right after enforcing): keep showing its progress.
  pollInvalidation();
}

// Leaving the page (or signing out) stops the clean-up progress polling.
export function stopOrganization() {
  clearTimeout(poller);
  poller = null;
}

async function load() {
  const [, mfa, members, keys, backups, audit] = await Promise.all([
    context.refresh(),
    api.get("org/mfa"),
    api.get("org/members"),
    api.get("org/mfa/keys"),
    api.get("org/backup-credentials"),
    api.get(`org/audit?limit=${AUDIT_PAGE}`),
  ]);
  renderStatus(mfa);
  renderMembers(members, { append: false });
  renderKeys(keys, { append: false });
  renderBackupCredentials(backups.backup_credentials);
  renderAudit(audit, { append: false });
}

// --- Enforcement -------------------------------------------------------------------------------

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
    : me.user.id.startsWith("backup:")
      ? "Backup credentials cannot enforce MFA: sign in through your identity provider, with a security key of your own."
      : "You need a security key of your own before you can enforce MFA: add one in Personal settings.";

  const since = $("enforced-since");
  since.hidden = !mfa.enforced;
  since.replaceChildren(...(mfa.enforced
    ? ["MFA is enforced since ", when(mfa.enforced_at), mfa.enforced_by ? ` (by ${mfa.enforced_by}).` : "."]
    : []));

  const total = mfa.members_total;
  const meter = $("compliance-meter");
  meter.max = Math.max(total, 1);
  meter.value = mfa.members_compliant;
  meter.low = Math.max(total, 1) - 0.5; // anything short of everyone shows as a warning
  meter.high = Math.max(total, 1) - 0.25;
  meter.optimum = Math.max(total, 1);
  const text = `${mfa.members_compliant} of ${total} ${total === 1 ? "member has" : "members have"} a security key`;
  meter.textContent = text;
  meter.setAttribute("aria-valuetext", text);
  $("compliance-text").textContent = text;

  renderInvalidation(mfa);
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
  stopOrganization();
  if (status?.invalidation?.state !== "running") return;
  poller = setTimeout(() => run(null, async () => {
    if (poller === null) return;
    const mfa = await api.get("org/mfa");
    renderStatus(mfa);
    if (mfa.invalidation?.state === "running") {
      pollInvalidation();
    } else if (mfa.invalidation) {
      poller = null;
      // The clean-up's own audit event, and members whose sessions it ended.
      await reloadLists();
      announce(`Session clean-up finished: ${mfa.invalidation.sessions_ended} ${mfa.invalidation.sessions_ended === 1 ? "session" : "sessions"} ended.`);
    }
  }), POLL_INTERVAL_MS);
}

async function changeEnforcement(enforce) {
  const wanted = enforce.checked;
  // The switch shows the organization's actual setting until the change is confirmed and made.
  enforce.checked = !wanted;
  const confirmed = await confirmAction(wanted
    ? {
      title: "Enforce MFA for everyone?",
      text: "Every other session of the organization ends at once; yours stays. Members without a security key "
        + "must register one at their next sign-in, so make sure they have a FIDO2 security key. Create backup "
        + "credentials first: they are the way back in when a key is lost.",
      confirm: "Enforce MFA",
    }
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

// --- Members and their keys --------------------------------------------------------------------

function renderMembers({ members, next }, { append }) {
  cursors.members = next ?? null;
  const rows = members.map((member) => row({},
    cell("Member", h("span", { class: "member-name" }, member.name || member.id),
      h("span", { class: "muted block" }, member.email || member.id)),
    cell("Role", member.admin ? "Admin" : "Member"),
    cell("Security keys", String(member.key_count)),
    cell("MFA", member.compliant
      ? h("span", { class: "pill ok" }, "Has a security key")
      : h("span", { class: "pill warn" }, "No security key")),
    cell("Last sign-in", when(member.last_login_at)),
  ));
  const body = $("members");
  if (append) body.append(...rows);
  else body.replaceChildren(...(rows.length ? rows : [emptyRow(5, "No members yet.")]));
  $("members-more").hidden = !cursors.members;
}

function renderKeys({ keys, next }, { append }) {
  cursors.keys = next ?? null;
  const rows = keys.map((key) => {
    const owner = key.user.name || key.user.id;
    return row({ dataset: { keyId: key.id } },
      cell("Member", owner),
      cell("Name", key.name),
      cell("Key ID", keyId(key.id)),
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
  else body.replaceChildren(...(rows.length ? rows : [emptyRow(6, "No member has a security key yet.")]));
  $("org-keys-more").hidden = !cursors.keys;
}

async function deleteMemberKey(button, key, owner) {
  const confirmed = await confirmAction({
    title: `Delete “${key.name}” of ${owner}?`,
    text: `${owner} will no longer be able to sign in with this security key (key ID ${key.id}). If it is their last `
      + "key and MFA is enforced, they must register a new key at their next sign-in.",
    confirm: "Delete key",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/members/${segment(key.user.id)}/mfa/keys/${segment(key.id)}`);
    const mfa = await api.get("org/mfa");
    await context.refresh();
    renderStatus(mfa);
    await reloadLists();
    announce(`Security key “${key.name}” of ${owner} was deleted.`);
    $("org-keys-title").setAttribute("tabindex", "-1");
    $("org-keys-title").focus();
  });
}

async function reloadLists() {
  const [members, keys, audit] = await Promise.all([
    api.get("org/members"), api.get("org/mfa/keys"), api.get(`org/audit?limit=${AUDIT_PAGE}`),
  ]);
  renderMembers(members, { append: false });
  renderKeys(keys, { append: false });
  renderAudit(audit, { append: false });
}

// --- Backup credentials ------------------------------------------------------------------------

function renderBackupCredentials(credentials) {
  const rows = credentials.map((credential) => row({},
    cell("Key ID", keyId(credential.key_id)),
    cell("Created", when(credential.created_at)),
    cell("Created by", credential.created_by),
    cell("Last used", when(credential.last_used_at)),
    actionsCell(trashButton({
      label: `Delete backup credentials ${credential.key_id}`,
      onclick: (event) => deleteBackupCredentials(event.currentTarget, credential),
    })),
  ));
  $("backup-list").replaceChildren(...(rows.length ? rows : [emptyRow(5, "No backup credentials yet.")]));
}

async function createBackupCredentials() {
  const created = await api.post("org/backup-credentials");
  $("backup-new-key-id").textContent = created.key_id;
  $("backup-new-secret").textContent = created.secret;
  const box = $("backup-new");
  box.hidden = false;
  box.focus();
  const { backup_credentials } = await api.get("org/backup-credentials");
  renderBackupCredentials(backup_credentials);
  announce("Backup credentials created. Copy the secret now: it is shown only once.");
}

function forgetNewSecret() {
  // Once dismissed, the secret is gone from the page for good.
  $("backup-new-secret").textContent = "";
  $("backup-new-key-id").textContent = "";
  $("backup-new").hidden = true;
  $("backup-create").focus();
}

async function copySecret() {
  try {
    await navigator.clipboard.writeText($("backup-new-secret").textContent);
    announce("The secret was copied to the clipboard.");
  } catch {
    showError("The browser did not allow copying. Select the secret and copy it yourself.");
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
    const { backup_credentials } = await api.get("org/backup-credentials");
    renderBackupCredentials(backup_credentials);
    announce(`Backup credentials ${credential.key_id} were deleted.`);
    $("backup-create").focus();
  });
}

// --- Audit log ---------------------------------------------------------------------------------

function renderAudit({ events, next }, { append }) {
  cursors.audit = next ?? null;
  const rows = events.map((event) => row({},
    cell("When", when(event.at)),
    cell("Who", event.actor),
    cell("What", describeAction(event.action)),
    cell("Target", event.target ?? ""),
  ));
  const body = $("audit");
  if (append) body.append(...rows);
  else body.replaceChildren(...(rows.length ? rows : [emptyRow(4, "Nothing recorded yet.")]));
  $("audit-more").hidden = !cursors.audit;
}

async function loadMore(kind, path, render) {
  const page = await api.get(`${path}${path.includes("?") ? "&" : "?"}next=${encodeURIComponent(cursors[kind])}`);
  render(page, { append: true });
}

$("enforce").addEventListener("change", (event) => changeEnforcement(event.currentTarget));
$("members-more").addEventListener("click", (event) => run(event.currentTarget, () => loadMore("members", "org/members", renderMembers)));
$("org-keys-more").addEventListener("click", (event) => run(event.currentTarget, () => loadMore("keys", "org/mfa/keys", renderKeys)));
$("audit-more").addEventListener("click", (event) => run(event.currentTarget, () => loadMore("audit", `org/audit?limit=${AUDIT_PAGE}`, renderAudit)));
$("backup-create").addEventListener("click", (event) => run(event.currentTarget, createBackupCredentials));
$("backup-copy").addEventListener("click", copySecret);
$("backup-done").addEventListener("click", forgetNewSecret);
