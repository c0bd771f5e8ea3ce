// Enrolment passes, both sides: an admin requires passes for first security keys and issues a
// member's pass (its code shown once), and a member enters the code when registering a first key.

import { api, segment, token } from "./api.js";
import { screen } from "./organization-screen.js";
import {
  actionsCell, announce, cell, confirmAction, copyText, emptyRow, h, row, run, showError, trashButton, when,
} from "./ui.js";
import { createCredential } from "./webauthn.js";

// --- A member registering a key ----------------------------------------------------------------

// Registers a security key named `name`, with the code from `codeInput` when the organization
// requires a pass for this (first) key. The screens show the code field from the start when GET
// /me says a code is needed; the registration options have the last word, as the organization's
// setting may have changed since. When a code is needed and none was entered, nothing else
// happens: the security key is not asked before the code is there.
// Returns the new key, or null when the code is still needed.
export async function registerKey({ name, codeField, codeInput }) {
  const { challenge_id, publicKey, enrollment_code_required: codeRequired } = await api.post("me/mfa/keys/options");
  const code = codeInput.value.trim();
  codeField.hidden = !codeRequired;
  if (codeRequired && !code) {
    showError("Your organization requires an enrolment pass for your first security key: enter the code an admin gave you.");
    codeInput.focus();
    return null;
  }
  const credential = await createCredential(publicKey);
  const body = { challenge_id, name, credential };
  if (codeRequired) body.enrollment_code = code;
  const { key, token: activated } = await api.post("me/mfa/keys", body);
  // Registering made a waiting session active under a new token; the old one no longer works.
  if (activated) token.set(activated);
  codeInput.value = "";
  codeField.hidden = true;
  return key;
}

// --- An admin: the organization's policy ---------------------------------------------------------

export function renderEnrollmentPolicy(mfa) {
  screen.enrollment.passRequired.checked = mfa.enrollment === "pass_required";
}

async function changePolicy(toggle) {
  const wanted = toggle.checked;
  await run(toggle, async () => {
    let mfa;
    try {
      mfa = await api.put("org/mfa", { enrollment: wanted ? "pass_required" : "open" });
    } catch (error) {
      // A refused change leaves the switch showing the setting in force (the page may then reload it).
      toggle.checked = !wanted;
      throw error;
    }
    renderEnrollmentPolicy(mfa);
    announce(wanted
      ? "A member's first security key now needs an enrolment pass from an admin."
      : "Members can register a first security key without an enrolment pass.");
  });
}

// --- An admin: a member's passes -----------------------------------------------------------------

const elements = screen.enrollment.passes;
let shownFor = null; // the member whose passes are shown

// A member's enrolment passes, on their page (organization-member.js); `focus` moves to the list.
export async function showPasses(member, { focus = true } = {}) {
  if (shownFor?.id !== member.id) forgetPassCode();
  shownFor = member;
  elements.member.textContent = member.name || member.id;
  const { enrollment_passes: passes } = await api.get(`org/members/${segment(member.id)}/enrollment-passes`);
  renderPasses(passes);
  elements.panel.hidden = false;
  if (focus) elements.title.focus();
}

const STATES = { active: "Active", used: "Used", revoked: "Revoked", expired: "Expired" };

function renderPasses(passes) {
  const name = shownFor.name || shownFor.id;
  const rows = passes.map((pass) => row({ dataset: { passId: pass.id } },
    cell("Issued", when(pass.created_at)),
    cell("By", pass.created_by),
    cell("Expires", when(pass.expires_at)),
    cell("State", h("span", { class: `pill ${pass.state === "active" ? "ok" : "muted"}` }, STATES[pass.state] ?? pass.state)),
    actionsCell(pass.state === "active" || pass.state === "expired"
      ? trashButton({
        label: `Revoke the enrolment pass of ${name} issued ${new Date(pass.created_at).toLocaleString()}`,
        onclick: (event) => revokePass(event.currentTarget, pass),
      })
      : null),
  ));
  elements.list.replaceChildren(...(rows.length ? rows : [emptyRow(5, "No enrolment passes yet.")]));
}

async function issuePass() {
  const member = shownFor;
  const lifetime = Number(elements.lifetime.value);
  const issued = await api.post(`org/members/${segment(member.id)}/enrollment-passes`, { lifetime_minutes: lifetime });
  elements.newCode.textContent = issued.code;
  elements.newExpires.replaceChildren(when(issued.expires_at));
  elements.newPass.hidden = false;
  elements.newPass.focus();
  const { enrollment_passes: passes } = await api.get(`org/members/${segment(member.id)}/enrollment-passes`);
  renderPasses(passes);
  announce(`Enrolment pass issued to ${member.name || member.id}. Give them the code now: it is shown only once.`);
}

async function revokePass(button, pass) {
  const member = shownFor;
  const name = member.name || member.id;
  const confirmed = await confirmAction({
    title: `Revoke this enrolment pass of ${name}?`,
    text: `${name} will not be able to register a first security key with its code.`,
    confirm: "Revoke pass",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/members/${segment(member.id)}/enrollment-passes/${segment(pass.id)}`);
    const { enrollment_passes: passes } = await api.get(`org/members/${segment(member.id)}/enrollment-passes`);
    renderPasses(passes);
    announce(`The enrolment pass of ${name} was revoked.`);
    elements.issue.focus();
  });
}

// The code leaves the page for good: dismissed, another member chosen, or signed out.
export function forgetPassCode() {
  elements.newCode.textContent = "";
  elements.newExpires.replaceChildren();
  elements.newPass.hidden = true;
}

function copyCode() {
  return copyText(elements.newCode.textContent, { what: "the code", select: elements.newCode });
}

// Signing out closes the panel, whose member the next person at the tab has nothing to do with.
export function forgetPasses() {
  forgetPassCode();
  shownFor = null;
  elements.panel.hidden = true;
  elements.list.replaceChildren();
}

function closePasses() {
  forgetPasses();
  screen.members.title.setAttribute("tabindex", "-1");
  screen.members.title.focus();
}

screen.enrollment.passRequired.addEventListener("change", (event) => changePolicy(event.currentTarget));
elements.issue.addEventListener("click", (event) => run(event.currentTarget, issuePass));
elements.copy.addEventListener("click", copyCode);
elements.done.addEventListener("click", () => {
  forgetPassCode();
  elements.issue.focus();
});
elements.close.addEventListener("click", closePasses);
