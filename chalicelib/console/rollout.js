// Rolling enforcement out, the one place where MFA is enforced: on the organization page, the
// roll-out flow — where enforcement stands, in words; before enforcing, the preview of who it
// affects, the choice of at once or a grace period, the pre-flight checklist and the confirmation;
// once enforced, changing or ending the grace period and turning enforcement off — then members
// filtered by how many keys they hold, and offboarding; on the personal page, the member's own
// registration deadline.

import { api, segment } from "./api.js";
import { adminsWithoutKey, coverageBeingCounted, figuresKnown } from "./compliance.js";
import { askBeforeEnforcing, loadChecklist } from "./enforcement-checklist.js";
import { enforcementState, graceRunning, rememberWithoutKey } from "./enforcement-state.js";
import { createBackupCredentialsFirst } from "./organization-backup.js";
import { isBackupSession, isYou, organization, screen } from "./organization-screen.js";
import { personalScreen } from "./personal-screen.js";
import { WORDS, counted, form, partOf } from "./plural.js";
import { announce, cell, confirmAction, emptyRow, h, row, run, when } from "./ui.js";

const GRACE_HOURS_WRONG = "The grace period must be a whole number of hours from 0 to 720.";
// Before enforcing, none is chosen as "At their next sign-in" rather than as 0 hours.
const NEW_GRACE_HOURS_WRONG = "The grace period must be a whole number of hours from 1 to 720.";

let onChange = null;
let card = null; // built on first show, then kept: its controls by name
let shown = null; // the GET /org/mfa answer the flow shows
let deadlineNotice = null; // on the personal page, built on first show

// The organization page's roll-out card, built once and refreshed with the page.
// `changed` reloads the rest of the page after an enforcement or an offboarding.
export async function showRollout(mfa, changed) {
  onChange = changed;
  card ??= buildCard();
  renderRolloutState(mfa);
  await loadMembers();
  return card.section;
}

// Signing out: the next admin at the tab starts from the card's defaults.
export function forgetRollout() {
  onChange = null;
  shown = null;
  if (!card) return;
  card.graceNow.checked = true;
  renderGraceChoice(card);
  card.graceHours.value = "72";
  card.graceChange.value = "0";
  card.coverageFilter.value = "none";
  card.preview.replaceChildren();
  card.coverageMembers.replaceChildren();
}

// The overview's way in: the flow is brought into view, its heading (then its state) read first.
export function openRollout() {
  if (!card) return;
  organization.reveal?.("rollout");
  card.section.scrollIntoView({ block: "start" });
  card.title.focus();
}

function buildCard() {
  const built = {
    title: h("h2", { id: "rollout-title", tabindex: "-1" }, "Roll-out"),
    state: h("p", { id: "rollout-state" }),
    // Before enforcing.
    graceNow: h("input", { type: "radio", name: "rollout-grace", id: "rollout-grace-now", value: "now", checked: true,
      "aria-describedby": "rollout-grace-now-hint" }),
    graceLater: h("input", { type: "radio", name: "rollout-grace", id: "rollout-grace-later", value: "later",
      "aria-describedby": "rollout-grace-later-hint" }),
    graceHours: h("input", { id: "grace-hours", class: "hours", type: "number", min: "1", max: "720", step: "1", value: "72",
      "aria-describedby": "grace-help" }),
    previewButton: h("button", { type: "button", id: "rollout-preview-button", onclick: (event) => preview(event.currentTarget) },
      "Preview enforcement"),
    enforceButton: h("button", { type: "button", class: "primary", id: "rollout-enforce", "aria-describedby": "enforce-reason",
      onclick: (event) => enforce(event.currentTarget) }, "Enforce MFA…"),
    enforceReason: h("p", { id: "enforce-reason", class: "reason", hidden: true }),
    preview: h("div", { id: "rollout-preview", "aria-live": "polite" }),
    // Once enforced.
    graceChange: h("input", { id: "grace-change", class: "hours", type: "number", min: "0", max: "720", step: "1", value: "0",
      "aria-describedby": "grace-change-help" }),
    graceSave: h("button", { type: "button", id: "grace-save", onclick: (event) => saveGrace(event.currentTarget) },
      "Change grace period"),
    graceEnd: h("button", { type: "button", id: "grace-end", onclick: (event) => endGrace(event.currentTarget) },
      "End grace period now"),
    relax: h("button", { type: "button", class: "danger", id: "rollout-relax", "aria-describedby": "rollout-relax-help",
      onclick: (event) => relax(event.currentTarget) }, "Stop enforcing MFA…"),
    coverageFilter: h("select", { id: "coverage-filter" },
      h("option", { value: "none" }, "Members without a security key"),
      h("option", { value: "one" }, "Members with one security key"),
      h("option", { value: "many" }, "Members with several security keys")),
    coverageMembers: h("tbody", { role: "rowgroup", id: "coverage-members" }),
  };
  built.graceHoursField = h("div", { class: "field grace-hours" },
    h("label", { for: "grace-hours" }, "Grace period (hours)"),
    built.graceHours,
    h("p", { id: "grace-help", class: "hint" }, "1 to 720 hours (30 days), counted from the moment you enforce."));
  built.before = h("div", { class: "stack", id: "rollout-before" },
    h("p", { class: "hint" }, "Enforcing ends every other session of the organization at once; yours stays. "
      + "Members without a security key must then register one, so make sure they have a FIDO2 security key."),
    h("fieldset", { class: "choices", id: "rollout-when" },
      h("legend", {}, "When members without a security key must register one"),
      h("div", { class: "choice" }, built.graceNow,
        h("label", { for: "rollout-grace-now" }, "At their next sign-in"),
        h("p", { id: "rollout-grace-now-hint", class: "muted" }, "Nobody works without a key from the moment you enforce.")),
      h("div", { class: "choice" }, built.graceLater,
        h("label", { for: "rollout-grace-later" }, "After a grace period"),
        h("p", { id: "rollout-grace-later-hint", class: "muted" },
          "Members without a key may keep signing in and working until it ends; then they must register one.")),
      built.graceHoursField),
    h("div", { class: "button-row" }, built.previewButton, built.enforceButton),
    built.enforceReason,
    built.preview);
  built.after = h("div", { class: "stack", id: "rollout-after", hidden: true },
    h("div", { class: "field" },
      h("label", { for: "grace-change" }, "Grace period (hours after enforcing)"),
      built.graceChange,
      h("p", { id: "grace-change-help", class: "hint" }, "Counted from the moment MFA was enforced, for every member "
        + "without a key at once; shortening it too. 0 means none: they must register a key to keep working.")),
    h("div", { class: "button-row" }, built.graceSave, built.graceEnd),
    h("div", { class: "button-row" }, built.relax),
    h("p", { id: "rollout-relax-help", class: "hint" }, "Members may then delete all their security keys and sign in "
      + "without one. Sessions that enforcement ended stay ended."));
  built.section = h("section", { class: "card", id: "rollout", "aria-labelledby": "rollout-title" },
    built.title,
    built.state,
    built.before,
    built.after,
    h("h3", { id: "coverage-title" }, "Members by security keys"),
    h("label", { for: "coverage-filter" }, "Show"),
    built.coverageFilter,
    h("table", { role: "table", class: "responsive", "aria-labelledby": "coverage-title" }, built.coverageMembers),
  );
  screen.cards.first.after(built.section);
  built.coverageFilter.addEventListener("change", () => run(null, loadMembers));
  for (const radio of [built.graceNow, built.graceLater]) radio.addEventListener("change", () => renderGraceChoice(built));
  renderGraceChoice(built);
  return built;
}

function renderGraceChoice(parts) {
  parts.graceHoursField.hidden = !parts.graceLater.checked;
}

// Where enforcement stands, and only what makes sense from there: before enforcing, the way to
// enforce; once enforced (with or without a grace period), its grace period and turning it off —
// never an offer to enforce again. An admin's edits stay through a refresh that changes neither.
export function renderRolloutState(mfa) {
  if (!card) return;
  const before = shown;
  shown = mfa;
  card.state.replaceChildren(...enforcementState(mfa));
  card.before.hidden = mfa.enforced;
  card.after.hidden = !mfa.enforced;
  if (before?.enforced !== mfa.enforced) card.preview.replaceChildren();
  if (mfa.enforced) {
    if (before?.enforced !== mfa.enforced || before?.grace_period_hours !== mfa.grace_period_hours) {
      card.graceChange.value = String(mfa.grace_period_hours);
    }
    card.graceEnd.hidden = !graceRunning(mfa);
  }
  // Enforcing without a key of one's own would lock the admin out at their next sign-in.
  const keyless = organization.session.me.mfa.key_count === 0;
  card.enforceButton.disabled = keyless;
  card.enforceReason.hidden = !keyless;
  card.enforceReason.textContent = !keyless ? ""
    : isBackupSession()
      ? "Backup credentials cannot enforce MFA: sign in through your identity provider, with a security key of your own."
      : "You need a security key of your own before you can enforce MFA: add one in Personal settings.";
}

// The grace period chosen before enforcing: 0 for at once, null when the hours are not 1 to 720.
function chosenGraceHours() {
  if (card.graceNow.checked) return 0;
  const hours = Number(card.graceHours.value);
  return card.graceHours.value.trim() !== "" && Number.isInteger(hours) && hours >= 1 && hours <= 720 ? hours : null;
}

function renderPreview(found) {
  rememberWithoutKey(found);
  const without = found.members_without_key;
  card.preview.replaceChildren(
    h("p", { id: "preview-summary" },
      `Enforcing now would end about ${found.sessions_ending_estimate} other `
      + `${form(found.sessions_ending_estimate, WORDS.session)}; `
      + `${partOf(without, found.members_total, WORDS.member, WORDS.has)} no security key and must register one.`),
    h("ul", { id: "preview-members", "aria-label": "Members without a security key" },
      ...found.members_without_key_first_page.map((member) =>
        h("li", {}, member.name || member.id, isYou(member.id) ? " (you)" : ""))),
    adminsWithoutKey(found),
  );
}

async function preview(button) {
  await run(button, async () => renderPreview(await api.get("org/mfa/preview")));
}

// The one way to enforce: the preview as it is now, the pre-flight checklist, then the request.
async function enforce(button) {
  const hours = chosenGraceHours();
  if (hours === null) {
    announce(NEW_GRACE_HOURS_WRONG);
    card.graceHours.focus();
    return;
  }
  const found = await run(button, loadChecklist);
  if (!found) return;
  renderPreview(found.preview);
  const along = await askBeforeEnforcing(found, {
    consequence: "Members without a security key "
      + (hours ? `may keep working for ${counted(hours, WORDS.hour)}, then must register one.` : "must register one at their next sign-in."),
    createFirst: createBackupCredentialsFirst,
  });
  if (!along) return;
  const done = await run(button, async () => {
    await api.put("org/mfa", { enforced: true, grace_period_hours: hours, ...along });
    // Told once the page shows it.
    await onChange();
    announce("MFA is now enforced. Every other session of the organization is being ended.");
    return true;
  });
  if (done) card.title.focus();
}

async function saveGrace(button) {
  const hours = Number(card.graceChange.value);
  if (card.graceChange.value.trim() === "" || !Number.isInteger(hours) || hours < 0 || hours > 720) {
    announce(GRACE_HOURS_WRONG);
    card.graceChange.focus();
    return;
  }
  await changeGrace(button, hours, `The grace period is now ${counted(hours, WORDS.hour)} after enforcing.`);
}

async function endGrace(button) {
  const confirmed = await confirmAction({
    title: "End the grace period now?",
    text: "Members without a security key must register one before they can keep working: their next sign-in "
      + "or request asks for it.",
    confirm: "End grace period",
  });
  if (!confirmed) return;
  await changeGrace(button, 0, "The grace period has ended: members without a security key must register one.");
}

async function changeGrace(button, hours, told) {
  await run(button, async () => {
    // Without `enforced`: should another admin have turned enforcement off meanwhile, this is
    // refused (MfaNotEnforced) rather than enforcing again.
    const mfa = await api.put("org/mfa", { grace_period_hours: hours });
    card.graceChange.value = String(mfa.grace_period_hours);
    await onChange();
    announce(told);
  });
  if (!button.checkVisibility()) card.title.focus();
}

async function relax(button) {
  const confirmed = await confirmAction({
    title: "Stop enforcing MFA?",
    text: "Members will be able to delete all their security keys and sign in without one. Sessions that "
      + "enforcement ended stay ended.",
    confirm: "Stop enforcing",
  });
  if (!confirmed) return;
  const done = await run(button, async () => {
    await api.put("org/mfa", { enforced: false });
    await onChange();
    announce("MFA is no longer enforced.");
    return true;
  });
  if (done) card.title.focus();
}

async function loadMembers() {
  (await loadCoverageMembers())();
}

// The members of the coverage chosen, read now and shown when the page shows the rest of what it
// read: while the figures are being recounted (compliance.js), the list says so instead.
// Only the latest read is shown: a slower, older one (a refresh started before the filter
// changed) must not overwrite the list the admin chose since.
let coverageReads = 0;

export async function loadCoverageMembers({ signal } = {}) {
  if (!card) return () => {};
  const read = ++coverageReads;
  const filter = card.coverageFilter.value;
  const { members } = await api.get(`org/members?mfa=${filter}`, { signal });
  return () => {
    if (read === coverageReads) renderCoverageMembers(members);
  };
}

function renderCoverageMembers(members) {
  if (!figuresKnown()) {
    card.coverageMembers.replaceChildren(coverageBeingCounted(4));
    return;
  }
  const rows = members.map((member) => row({ dataset: { userId: member.id } },
    cell("Member", member.name || member.id, isYou(member.id) ? " (you)" : ""),
    cell("Security keys", String(member.key_count)),
    cell("Last sign-in", when(member.last_login_at)),
    // keyward refuses an admin's offboarding of themselves (CannotOffboardYourself): no button for it.
    cell("Actions", isYou(member.id) ? h("span", { class: "muted" }, "Another admin can offboard you.") : h("button", {
      type: "button", class: "danger", "aria-label": `Offboard ${member.name || member.id}`,
      onclick: (event) => offboard(event.currentTarget, member),
    }, "Offboard")),
  ));
  card.coverageMembers.replaceChildren(...(rows.length ? rows : [emptyRow(4, "No such members.")]));
}

async function offboard(button, member) {
  const name = member.name || member.id;
  const confirmed = await confirmAction({
    title: `Offboard ${name}?`,
    text: `${name} is removed from the organization: their sessions end, their security keys are deleted. `
      + "The audit log keeps the record. If your identity provider signs them in again, they start over.",
    confirm: "Offboard",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/members/${segment(member.id)}`);
    announce(`${name} was offboarded.`);
    await onChange();
  });
}

// The personal page: a member without a key, during a grace period, sees until when.
export function showRegistrationDeadline(me) {
  const due = me.mfa.registration_due_at;
  if (!deadlineNotice) {
    deadlineNotice = h("p", { id: "registration-deadline", class: "warning", role: "note" });
    personalScreen.mfaState.after(deadlineNotice);
  }
  deadlineNotice.hidden = !due;
  deadlineNotice.replaceChildren(...(due
    ? ["Your organization enforces MFA: register a security key by ", when(due), " to keep signing in."]
    : []));
}
