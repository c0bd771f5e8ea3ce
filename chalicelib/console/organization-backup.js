// Organization settings → Backup credentials: the way back in when a key is lost. A new secret is
// shown once and leaves the page for good when dismissed, when the page is left, or on sign-out.

import { api, segment } from "./api.js";
import { nameOf } from "./organization-members.js";
import { isBackupSession, isYou, organization, organizationPage, screen } from "./organization-screen.js";
import {
  actionsCell, announce, cell, confirmAction, copyText, emptyRow, focusScreen, keyId, row, run, trashButton, when,
} from "./ui.js";

const elements = screen.backup;
let credentials = [];
let enforced = false; // as GET /org/mfa last said

// Told by the enforcement section whenever it shows the organization's setting.
export function showEnforcement(isEnforced) {
  enforced = isEnforced;
  renderNoWayBack();
}

// What the page says of backup credentials follows whether any exist: before enforcing, advice to
// create them (gone once they exist); enforced without them, a warning that stays until they do.
function renderNoWayBack() {
  screen.enforcement.warning.hidden = enforced || credentials.length > 0;
  elements.noWayBack.hidden = !(enforced && credentials.length === 0);
}

export function renderBackupCredentials(found) {
  credentials = found;
  const rows = found.map((credential) => row({},
    cell("Key ID", keyId(credential.key_id)),
    cell("Created", when(credential.created_at)),
    cell("Created by", isYou(credential.created_by) ? "You" : nameOf(credential.created_by)),
    cell("Last used", when(credential.last_used_at)),
    actionsCell(trashButton({
      label: `Delete backup credentials ${credential.key_id}`,
      onclick: (event) => deleteBackupCredentials(event.currentTarget, credential),
    })),
  ));
  elements.list.replaceChildren(...(rows.length ? rows : [emptyRow(5, "No backup credentials yet.")]));
  // A backup session may not make more of itself: the button says so rather than fail.
  elements.create.disabled = isBackupSession();
  elements.createReason.hidden = !isBackupSession();
  elements.noWayBackCreate.disabled = isBackupSession();
  renderNoWayBack();
}

export function forgetBackupCredentials() {
  credentials = [];
  enforced = false;
  renderNoWayBack();
  forgetNewSecret({ focus: false });
  elements.list.replaceChildren();
}

// Resolves to true when the page may be left: at once, unless a new secret is still on screen.
export async function leaveNewSecret() {
  if (elements.secretBox.hidden) return true;
  return confirmAction({
    title: "Leave without the new secret?",
    text: `The secret of backup credentials ${elements.newKeyId.textContent} cannot be shown again. `
      + "Copy it and keep it somewhere safe before you go; without it, these credentials are useless.",
    confirm: "Leave anyway",
  });
}

// Whether a new secret is on screen (closing the tab then asks first).
export function showsNewSecret() {
  return !elements.secretBox.hidden;
}

// The checklist before enforcing offers this instead.
export function createBackupCredentialsFirst() {
  return createBackupCredentials(elements.create);
}

async function createBackupCredentials(button) {
  if (!elements.secretBox.hidden) {
    const replace = await confirmAction({
      title: "Create other backup credentials?",
      text: `The secret of ${elements.newKeyId.textContent} on screen cannot be shown again. Copy it first; `
        + "the credentials themselves stay valid until you delete them.",
      confirm: "Create others",
      danger: false,
    });
    if (!replace) return;
  }
  await run(button, async () => {
    const created = await api.post("org/backup-credentials");
    elements.newKeyId.textContent = created.key_id;
    elements.newSecret.textContent = created.secret;
    // Created from another section (the checklist, the no-way-back warning): shown where it belongs.
    organization.reveal("backup-credentials");
    elements.secretBox.hidden = false;
    const { backup_credentials } = await api.get("org/backup-credentials");
    renderBackupCredentials(backup_credentials);
    announce("Backup credentials created. Copy the secret now: it is shown only once.", { near: elements.secretTitle });
    elements.secretBox.focus();
  });
}

function forgetNewSecret({ focus = true } = {}) {
  // Once dismissed, the secret is gone from the page for good.
  const shown = !elements.secretBox.hidden;
  elements.newSecret.textContent = "";
  elements.newKeyId.textContent = "";
  elements.secretBox.hidden = true;
  if (shown && focus) elements.create.focus();
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
    await organization.reload();
    announce(`Backup credentials ${credential.key_id} were deleted.`);
    if (!elements.create.disabled) elements.create.focus();
    else focusScreen();
  });
}

organizationPage.whenLeft(() => forgetNewSecret({ focus: false }));
elements.create.addEventListener("click", (event) => createBackupCredentials(event.currentTarget));
elements.noWayBackCreate.addEventListener("click", () => createBackupCredentials(elements.create));
elements.copy.addEventListener("click", () => copyText(elements.newSecret.textContent, {
  what: "the secret", select: elements.newSecret,
}));
elements.copyBoth.addEventListener("click", () => copyText(
  `Key ID: ${elements.newKeyId.textContent}\nSecret: ${elements.newSecret.textContent}`,
  { what: "the key ID and secret", plural: true },
));
elements.done.addEventListener("click", () => forgetNewSecret());
