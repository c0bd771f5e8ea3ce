// Personal settings → Multi-factor authentication: enable MFA, add, rename and delete security
// keys (and, with only one, a prompt to add a second), disable MFA; and the member's own sessions.

import { api, segment } from "./api.js";
import {
  actionsCell, ago, announce, cell, clearMessages, confirmAction, deviceName, emptyRow, h, policyShortfalls,
  refuseField, row, run, showScreen, trashButton, when,
} from "./ui.js";
import { registerKey } from "./enrollment.js";
import { Page } from "./page.js";
import { WORDS, counted, form } from "./plural.js";
import { personalScreen as screen } from "./personal-screen.js";
import { showRegistrationDeadline } from "./rollout.js";
import { showKeysSpared } from "./policy.js";

let context = null;
let keys = [];
let editing = null; // the ID of the key being renamed

// The owner of the page's requests (page.js): leaving the page, or signing out, abandons them, so
// that a late answer shows nothing of the page left. (The page has no timers.)
export const personalPage = new Page();
personalPage.reloadsWith(() => load());

// Signing out: nothing the last person typed stays for the next one.
export function forgetPersonal() {
  screen.addKey.form.reset();
}

export async function showPersonal(session) {
  context = session;
  editing = null;
  await load();
  showScreen("screen-personal");
}

async function load() {
  const signal = personalPage.signal;
  const [me, listed, sessions] = await Promise.all([
    context.refresh(), api.get("me/mfa/keys", { signal }), api.get("me/sessions", { signal }),
  ]);
  keys = listed.keys;
  render(me);
  renderSessions(sessions.sessions);
}

function isBackupSession(me) {
  return me.user.id.startsWith("backup:");
}

// A member who said "Not now" to the second-key prompt is not asked again in this tab (and the
// next sign-in in another tab asks again: one key is one loss away from needing an admin).
const SECOND_KEY_LATER = "keyward.second-key-later";

function secondKeyPostponed(me) {
  return sessionStorage.getItem(SECOND_KEY_LATER) === `${me.org.id}/${me.user.id}`;
}

function render(me) {
  const enforced = me.org.mfa_enforced;
  const backup = isBackupSession(me);
  const lastKeyLocked = enforced && keys.length === 1;

  screen.mfaState.textContent = backup
    ? "Backup credentials sign in without a security key; MFA settings belong to each member's own sign-in."
    : keys.length
    ? `MFA is on: you have ${counted(keys.length, WORDS.securityKey)}, and keyward asks for one at every sign-in.`
      + (enforced ? " Your organization enforces MFA." : "")
    : "MFA is off. Enable it by registering a security key: keyward then asks for the key at every sign-in.";
  showRegistrationDeadline(me);
  showKeysSpared(me, screen.mfaState);
  screen.backupNotice.hidden = !backup;
  screen.addKey.form.hidden = backup;
  screen.addKey.button.textContent = keys.length ? "Add key" : "Enable";
  // Asked for up front when the organization requires a pass for this (first) key.
  screen.addKey.codeField.hidden = !me.mfa.enrollment_code_required;
  screen.secondKey.root.hidden = backup || keys.length !== 1 || secondKeyPostponed(me);

  screen.keys.area.hidden = keys.length === 0;
  screen.disable.area.hidden = keys.length === 0 || backup;
  screen.keys.lastKeyReason.hidden = !lastKeyLocked;
  screen.disable.button.disabled = enforced;
  screen.disable.reason.hidden = !enforced;

  screen.keys.list.replaceChildren(...keys.map((key) => keyRow(key, { lastKeyLocked })));
}

function keyRow(key, { lastKeyLocked }) {
  if (editing === key.id) return renameRow(key);
  return row({ dataset: { keyId: key.id } },
    // What a member acts on, as a security page shows it: which key, since when, last used when.
    // A key the organization's policy does not accept says so under its name: it must be replaced.
    cell("Name", h("span", { class: "key-name" }, key.name),
      key.policy_compliant ? null : h("span", { class: "block muted" },
        key.counts_until ? "Counts until " : "",
        key.counts_until ? when(key.counts_until) : "",
        `${key.counts_until ? ", then n" : "N"}ot accepted by your organization's policy`
          + `${policyShortfalls(key) ? `: ${policyShortfalls(key)}` : ""}`)),
    cell("Added", ago(key.created_at)),
    cell("Last used", ago(key.last_used_at)),
    actionsCell(
      h("button", {
        type: "button", class: "quiet", "aria-label": `Rename ${key.name}`,
        onclick: () => startRename(key),
      }, "Rename"),
      trashButton({
        label: `Delete ${key.name}`,
        disabled: lastKeyLocked,
        describedBy: lastKeyLocked ? "last-key-reason" : null,
        onclick: (event) => deleteKey(event.currentTarget, key),
      }),
    ),
  );
}

function renameRow(key) {
  const input = h("input", {
    id: `rename-${key.id}`, name: "name", required: true, maxlength: 64, value: key.name, "aria-label": `New name for ${key.name}`,
  });
  const form = h("form", { class: "rename", novalidate: true },
    input,
    h("button", { type: "submit", class: "primary" }, "Save"),
    h("button", { type: "button", class: "quiet", onclick: () => stopRename(key) }, "Cancel"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(event.submitter, () => rename(key, input.value.trim(), input), { fields: { InvalidKeyName: input } });
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      stopRename(key);
    }
  });
  queueMicrotask(() => {
    input.focus();
    input.select();
  });
  return row({ dataset: { keyId: key.id } },
    h("td", { role: "cell", colspan: 4 }, form),
  );
}

function startRename(key) {
  editing = key.id;
  render(context.me);
}

function stopRename(key) {
  editing = null;
  clearMessages();
  render(context.me);
  screen.keys.list.querySelector(`button[aria-label="Rename ${CSS.escape(key.name)}"]`)?.focus();
}

async function rename(key, name, input) {
  if (!name) {
    refuseField(input, "Give the key a name of 1 to 64 printable characters.");
    return;
  }
  const { key: renamed } = await api.patch(`me/mfa/keys/${segment(key.id)}`, { name });
  editing = null;
  await load();
  announce(`Security key renamed to “${renamed.name}”.`);
  screen.keys.list.querySelector(`tr[data-key-id="${CSS.escape(key.id)}"] button`)?.focus();
}

async function addKey(name) {
  const enabling = keys.length === 0;
  const key = await registerKey({ name, codeField: screen.addKey.codeField, codeInput: screen.addKey.code });
  if (!key) return;
  screen.addKey.name.value = "";
  await load();
  announce(enabling
    ? `MFA is on. Security key “${key.name}” was added; you will use it at every sign-in.`
    : `Security key “${key.name}” was added.`);
}

// Asked before the button is busy, so that Cancel hands focus straight back to it.
async function deleteKey(button, key) {
  const last = keys.length === 1;
  const confirmed = await confirmAction({
    title: `Delete “${key.name}”?`,
    text: `You will no longer be able to sign in with this security key (key ID ${key.id}).`
      + (last ? " It is your last key, so MFA turns off." : ""),
    confirm: "Delete key",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`me/mfa/keys/${segment(key.id)}`, { change: `delete the security key “${key.name}”` });
    await load();
    announce(`Security key “${key.name}” was deleted.` + (last ? " MFA is off." : ""));
    screen.title.focus();
  });
}

async function disableMfa(button) {
  const confirmed = await confirmAction({
    title: "Disable MFA?",
    text: `This deletes ${form(keys.length, { one: "your only security key", other: `all ${keys.length} of your security keys` })}. `
      + "keyward will no longer ask for a key when you sign in.",
    confirm: "Disable MFA",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete("me/mfa");
    await load();
    announce("MFA is off. All your security keys were deleted.");
    screen.addKey.name.focus();
  });
}

// What a session may do, in words.
function sessionState(found) {
  if (found.state === "mfa_required") return "waiting for a security key";
  if (found.state === "registration_required") return "waiting for a security key to be registered";
  if (isBackupSession(context.me)) return "backup credentials";
  return keys.length ? "verified with a security key" : "signed in without a security key";
}

// The current session first, then the others newest first, as the API lists them.
function renderSessions(sessions) {
  const ordered = [...sessions.filter((found) => found.current), ...sessions.filter((found) => !found.current)];
  const rows = ordered.map((found) => {
    const device = deviceName(found.user_agent);
    return row({ dataset: { sessionId: found.id }, class: found.current ? "current" : null },
      cell("Device", h("span", { class: "device" }, device),
        found.current ? h("span", { class: "badge" }, "This session") : null),
      cell("State", sessionState(found)),
      cell("Started", ago(found.created_at)),
      cell("Last active", ago(found.last_seen_at, { never: "—" })),
      cell("IP address", h("span", { class: "nowrap" }, found.source_ip ?? "—")),
      actionsCell(found.current ? null : h("button", {
        type: "button", class: "quiet",
        "aria-label": `Sign out ${device}, started ${new Date(found.created_at).toLocaleString()}`,
        onclick: (event) => run(event.currentTarget, () => endSession(found)),
      }, "Sign out")),
    );
  });
  screen.sessions.list.replaceChildren(...(rows.length ? rows : [emptyRow(6, "No sessions.")]));
  screen.sessions.endOthers.hidden = !ordered.some((found) => !found.current);
}

async function reloadSessions() {
  const { sessions } = await api.get("me/sessions", { signal: personalPage.signal });
  renderSessions(sessions);
}

async function endSession(found) {
  await api.delete(`me/sessions/${segment(found.id)}`);
  await reloadSessions();
  announce("The session was ended.");
  screen.sessions.title.setAttribute("tabindex", "-1");
  screen.sessions.title.focus();
}

// "Sign out all other sessions": every browser but this one signs in again.
async function endOtherSessions(button) {
  const confirmed = await confirmAction({
    title: "Sign out all other sessions?",
    text: "Every other browser and device where you are signed in is signed out and must sign in again "
      + "(with a security key, if you have one). This session stays signed in.",
    confirm: "Sign out other sessions",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete("me/sessions");
    await reloadSessions();
    announce("All your other sessions were signed out.");
    screen.sessions.title.setAttribute("tabindex", "-1");
    screen.sessions.title.focus();
  });
}

screen.sessions.endOthers.addEventListener("click", (event) => endOtherSessions(event.currentTarget));

screen.addKey.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = screen.addKey.name.value.trim();
  if (!name) {
    refuseField(screen.addKey.name, "Give the key a name of 1 to 64 printable characters.");
    return;
  }
  run(event.submitter, () => addKey(name), { fields: { InvalidKeyName: screen.addKey.name } });
});

screen.disable.button.addEventListener("click", (event) => disableMfa(event.currentTarget));

screen.secondKey.add.addEventListener("click", () => {
  screen.addKey.name.focus();
  screen.addKey.name.select();
});
screen.secondKey.later.addEventListener("click", () => {
  sessionStorage.setItem(SECOND_KEY_LATER, `${context.me.org.id}/${context.me.user.id}`);
  screen.secondKey.root.hidden = true;
  screen.addKey.name.focus();
});
