// Rolling enforcement out: on the organization page, the grace period, a preview of what
// enforcing would do, members filtered by how many keys they hold, and offboarding; on the
// personal page, the member's own registration deadline.

import { api, segment } from "./api.js";
import { adminsWithoutKey, coverageBeingCounted, figuresKnown } from "./compliance.js";
import { askBeforeEnforcing, loadChecklist } from "./enforcement-checklist.js";
import { createBackupCredentialsFirst } from "./organization-backup.js";
import { isYou, screen } from "./organization-screen.js";
import { personalScreen } from "./personal-screen.js";
import { WORDS, counted, form, partOf } from "./plural.js";
import { announce, cell, confirmAction, emptyRow, h, row, run, when } from "./ui.js";

let onChange = null;
let card = null; // built on first show, then kept: its controls by name
let deadlineNotice = null; // on the personal page, built on first show

// The organization page's roll-out card, built once and refreshed with the page.
// `changed` reloads the rest of the page after an enforcement or an offboarding.
export async function showRollout(mfa, changed) {
  onChange = changed;
  card ??= buildCard();
  renderGrace(mfa);
  card.preview.replaceChildren();
  await loadMembers();
  return card.section;
}

// Signing out: the next admin at the tab starts from the card's defaults.
export function forgetRollout() {
  onChange = null;
  if (!card) return;
  card.graceHours.value = "0";
  card.coverageFilter.value = "none";
  card.preview.replaceChildren();
  card.coverageMembers.replaceChildren();
}

function buildCard() {
  const built = {
    graceHours: h("input", { id: "grace-hours", type: "number", min: "0", max: "720", step: "1", value: "0",
      "aria-describedby": "grace-help" }),
    graceDeadline: h("p", { id: "grace-deadline", class: "muted", hidden: true }),
    previewButton: h("button", { type: "button", id: "rollout-preview-button", onclick: (event) => preview(event.currentTarget) },
      "Preview enforcement"),
    graceSave: h("button", { type: "button", id: "grace-save", hidden: true, onclick: (event) => saveGrace(event.currentTarget) },
      "Change grace period"),
    preview: h("div", { id: "rollout-preview", "aria-live": "polite" }),
    coverageFilter: h("select", { id: "coverage-filter" },
      h("option", { value: "none" }, "Members without a security key"),
      h("option", { value: "one" }, "Members with one security key"),
      h("option", { value: "many" }, "Members with several security keys")),
    coverageMembers: h("tbody", { role: "rowgroup", id: "coverage-members" }),
  };
  built.section = h("section", { class: "card", id: "rollout", "aria-labelledby": "rollout-title" },
    h("h2", { id: "rollout-title" }, "Roll-out"),
    h("div", { class: "stack" },
      h("label", { for: "grace-hours" }, "Grace period (hours)"),
      built.graceHours,
      h("p", { id: "grace-help", class: "hint" }, "Members without a security key may keep signing in and working "
        + "for this long after MFA is enforced; then they must register one. 0 means at once."),
      built.graceDeadline,
      h("div", {}, built.previewButton, built.graceSave),
      built.preview),
    h("h3", { id: "coverage-title" }, "Members by security keys"),
    h("label", { for: "coverage-filter" }, "Show"),
    built.coverageFilter,
    h("table", { role: "table", class: "responsive", "aria-labelledby": "coverage-title" }, built.coverageMembers),
  );
  screen.cards.first.after(built.section);
  built.coverageFilter.addEventListener("change", () => run(null, loadMembers));
  return built;
}

function renderGrace(mfa) {
  const enforced = mfa.enforced;
  card.graceHours.value = String(enforced ? mfa.grace_period_hours : card.graceHours.value || 0);
  card.graceSave.hidden = !enforced;
  card.previewButton.hidden = enforced;
  const deadline = card.graceDeadline;
  deadline.hidden = !mfa.registration_due_at;
  deadline.replaceChildren(...(mfa.registration_due_at
    ? ["Members without a security key must register one by ", when(mfa.registration_due_at), "."]
    : []));
}

function graceHours() {
  const hours = Number(card.graceHours.value);
  return Number.isInteger(hours) && hours >= 0 && hours <= 720 ? hours : null;
}

async function preview(button) {
  await run(button, async () => {
    const found = await api.get("org/mfa/preview");
    const without = found.members_without_key;
    const list = h("ul", { id: "preview-members" },
      ...found.members_without_key_first_page.map((member) =>
        h("li", {}, member.name || member.id, isYou(member.id) ? " (you)" : "")));
    card.preview.replaceChildren(
      h("p", { id: "preview-summary" },
        `Enforcing now would end about ${found.sessions_ending_estimate} other `
        + `${form(found.sessions_ending_estimate, WORDS.session)}; `
        + `${partOf(without, found.members_total, WORDS.member, WORDS.has)} no security key and must register one.`),
      list,
      adminsWithoutKey(found),
      h("button", { type: "button", class: "primary", id: "rollout-enforce", onclick: (event) => enforce(event.currentTarget) },
        "Enforce MFA with this grace period"),
    );
  });
}

async function enforce(button) {
  const hours = graceHours();
  if (hours === null) {
    announce("The grace period must be a whole number of hours from 0 to 720.");
    return;
  }
  const found = await run(button, loadChecklist);
  if (!found) return;
  const along = await askBeforeEnforcing(found, {
    consequence: "Members without a security key "
      + (hours ? `may keep working for ${counted(hours, WORDS.hour)}, then must register one.` : "must register one at their next sign-in."),
    createFirst: createBackupCredentialsFirst,
  });
  if (!along) return;
  await run(button, async () => {
    await api.put("org/mfa", { enforced: true, grace_period_hours: hours, ...along });
    announce("MFA is now enforced. Every other session of the organization is being ended.");
    await onChange();
  });
}

async function saveGrace(button) {
  const hours = graceHours();
  if (hours === null) {
    announce("The grace period must be a whole number of hours from 0 to 720.");
    return;
  }
  await run(button, async () => {
    const mfa = await api.put("org/mfa", { enforced: true, grace_period_hours: hours });
    renderGrace(mfa);
    announce(`The grace period is now ${counted(hours, WORDS.hour)}.`);
  });
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
