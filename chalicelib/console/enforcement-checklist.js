// Before enforcing MFA (the one way to, the roll-out flow: rollout.js): a pre-flight checklist of
// what enforcing depends on — backup credentials, the admin's own security key, the members still
// without one — each in words. Without backup credentials the admin must say, in so many words,
// that they enforce without them: the API refuses otherwise (409 BackupCredentialsMissing).

import { api } from "./api.js";
import { organization } from "./organization-screen.js";
import { WORDS, counted, partOf } from "./plural.js";
import { focusScreen, h } from "./ui.js";

let dialog = null; // built on first use, then kept: its parts by name
let state = { backups: 0, ownKeys: 0 }; // what the checklist on screen found

function build() {
  const built = {
    text: h("p", { id: "preflight-text" }),
    backup: h("span", { id: "preflight-backup" }),
    ownKey: h("span", { id: "preflight-own-key" }),
    members: h("span", { id: "preflight-members" }),
    acknowledge: h("input", { type: "checkbox", id: "preflight-acknowledge", "aria-describedby": "preflight-acknowledge-help" }),
    acknowledgement: null,
    createFirst: h("button", { type: "button", id: "preflight-create-backup" }, "Create backup credentials first"),
    cancel: h("button", { type: "button", id: "preflight-cancel" }, "Cancel"),
    ok: h("button", { type: "button", id: "preflight-ok", class: "danger", "aria-describedby": "preflight-ok-reason" }, "Enforce MFA"),
    okReason: h("p", { id: "preflight-ok-reason", class: "reason", hidden: true }),
  };
  built.acknowledgement = h("div", { class: "stack", hidden: true },
    h("div", { class: "checkbox" },
      built.acknowledge,
      h("label", { for: "preflight-acknowledge" }, "Enforce without backup credentials")),
    h("p", { id: "preflight-acknowledge-help", class: "hint" },
      "I know that once MFA is enforced, nobody can get back in if the identity provider or the security keys are lost."));
  built.dialog = h("dialog", { id: "preflight", "aria-labelledby": "preflight-title", "aria-describedby": "preflight-text" },
    h("h2", { id: "preflight-title" }, "Before you enforce MFA"),
    built.text,
    h("h3", { id: "preflight-checklist-title" }, "Pre-flight checklist"),
    h("ul", { id: "preflight-checklist", class: "checklist", "aria-labelledby": "preflight-checklist-title" },
      h("li", {}, h("strong", {}, "Backup credentials: "), built.backup),
      h("li", {}, h("strong", {}, "Your own security key: "), built.ownKey),
      h("li", {}, h("strong", {}, "Members without a security key: "), built.members)),
    built.acknowledgement,
    built.okReason,
    h("div", { class: "button-row end" }, built.cancel, built.createFirst, built.ok),
  );
  document.body.append(built.dialog);
  built.acknowledge.addEventListener("change", () => allowEnforcing(built));
  return built;
}

function allowEnforcing(parts) {
  const reason = state.ownKeys === 0
    ? "You need a security key of your own before you can enforce MFA: add one in Personal settings."
    : state.backups === 0 && !parts.acknowledge.checked
      ? "Create backup credentials first, or tick “Enforce without backup credentials”."
      : "";
  parts.ok.disabled = reason !== "";
  parts.okReason.hidden = reason === "";
  parts.okReason.textContent = reason;
}

function membersSentence(found) {
  const without = found.members_without_key;
  const total = found.members_total;
  if (without === 0) return "None: every member has a security key.";
  return `${partOf(without, total, WORDS.member, WORDS.has)} no security key yet: they must `
    + "register one at their next sign-in (or when the grace period ends), so make sure they have a FIDO2 security key.";
}

// What the checklist shows, read when it is asked for: another admin may have changed it.
export async function loadChecklist() {
  const [preview, { backup_credentials: backups }] = await Promise.all([
    api.get("org/mfa/preview"), api.get("org/backup-credentials"),
  ]);
  return { preview, backups };
}

// Asks before enforcing, with what loadChecklist found. Resolves to the fields to send along with
// `enforced: true` ({} or { without_backup_credentials: true }); to null when the admin cancels, or
// chooses to create backup credentials first (`createFirst` is then called).
export function askBeforeEnforcing({ preview, backups }, { consequence, createFirst }) {
  dialog ??= build();
  const parts = dialog;
  const ownKeys = organization.session.me.mfa.key_count;
  state = { backups: backups.length, ownKeys };
  parts.text.textContent = `Every other session of the organization ends at once; yours stays. ${consequence}`;
  parts.backup.textContent = backups.length === 0
    ? "None. The organization has no backup credentials: create them first, they are the way back in when the "
      + "identity provider or the security keys are lost."
    : `Ready: the organization has ${counted(backups.length, WORDS.backupCredential)}.`;
  parts.ownKey.textContent = ownKeys === 0
    ? "None. Register a security key of your own (Personal settings) before enforcing MFA."
    : `Ready: you hold ${counted(ownKeys, WORDS.securityKey)}.`;
  parts.members.textContent = membersSentence(preview);
  parts.acknowledge.checked = false;
  parts.acknowledgement.hidden = backups.length !== 0;
  parts.createFirst.hidden = backups.length !== 0;
  allowEnforcing(parts);

  const opener = document.activeElement;
  return new Promise((resolve) => {
    const finish = (answer, then = null) => {
      parts.ok.removeEventListener("click", onOk);
      parts.cancel.removeEventListener("click", onCancel);
      parts.createFirst.removeEventListener("click", onCreateFirst);
      parts.dialog.removeEventListener("close", onClose);
      if (parts.dialog.open) parts.dialog.close();
      if (then) then();
      else if (opener && opener.isConnected && !opener.disabled) opener.focus();
      else focusScreen();
      resolve(answer);
    };
    const onOk = () => finish(backups.length === 0 ? { without_backup_credentials: true } : {});
    const onCancel = () => finish(null);
    const onCreateFirst = () => finish(null, createFirst);
    const onClose = () => finish(null); // Escape
    parts.ok.addEventListener("click", onOk);
    parts.cancel.addEventListener("click", onCancel);
    parts.createFirst.addEventListener("click", onCreateFirst);
    parts.dialog.addEventListener("close", onClose);
    parts.dialog.showModal();
    parts.cancel.focus();
  });
}

// Whether the checklist is on screen (a refresh then waits).
export function checklistOpen() {
  return Boolean(dialog?.dialog.open);
}
