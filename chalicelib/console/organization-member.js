// Organization settings → a member's own page (#/org/members/<user ID>): who they are, their
// security keys (deleted as on the keys section), their sessions (which an admin can end) and
// their enrolment passes. The page is read whenever it is shown, as a pasted link shows it.

import { api, segment } from "./api.js";
import { memberStanding } from "./compliance.js";
import { forgetPasses, showPasses } from "./enrollment.js";
import { deleteMemberKey } from "./organization-keys.js";
import { endMemberSessions } from "./organization-members.js";
import { isYou, organizationPage, screen } from "./organization-screen.js";
import { whenMemberPageShown } from "./organization-sections.js";
import { modelText } from "./policy.js";
import {
  actionsCell, ago, cell, deviceName, emptyRow, h, keyId, policyStatus, row, trashButton, when,
} from "./ui.js";

const elements = screen.member;
let shown = null; // the member whose page is shown

// The member of this user ID, or null: a search for their ID lists them first, if they exist.
async function findMember(userId, signal) {
  try {
    const { members } = await api.get(`org/members?search=${encodeURIComponent(userId)}&limit=1`, { signal });
    return members.find((member) => member.id === userId) ?? null;
  } catch (error) {
    if (error?.code === "MalformedRequest") return null; // no user ID is like this one
    throw error;
  }
}

export async function showMember(userId) {
  const signal = organizationPage.signal;
  const member = await findMember(userId, signal);
  if (!member) {
    showMissing();
    return;
  }
  const [{ keys }, { sessions }] = await Promise.all([
    api.get(`org/mfa/keys?user_id=${encodeURIComponent(userId)}&limit=500`, { signal }),
    api.get(`org/members/${segment(userId)}/sessions`, { signal }),
  ]);
  shown = member;
  const name = member.name || member.id;
  const own = isYou(member.id);
  elements.title.textContent = own ? `${name} (you)` : name;
  elements.summary.replaceChildren(
    [member.email, member.id].filter(Boolean).join(" · "), " · ",
    member.admin ? "Admin" : "Member", " · Last sign-in: ", when(member.last_login_at), " ",
    memberStanding(member));
  elements.missing.hidden = true;
  elements.details.hidden = false;
  renderKeys(keys, own ? "You" : name);
  renderSessions(sessions);
  elements.endSessions.hidden = own || sessions.length === 0;
  elements.endSessions.textContent = `End every session of ${name}`;
  await showPasses(member, { focus: false });
}

function showMissing() {
  shown = null;
  elements.title.textContent = "No such member";
  elements.summary.replaceChildren();
  elements.missing.hidden = false;
  elements.details.hidden = true;
  forgetPasses();
}

function renderKeys(keys, owner) {
  const rows = keys.map((key) => row({ dataset: { keyId: key.id } },
    cell("Name", key.name),
    cell("Key ID", keyId(key.id)),
    cell("Model", modelText(key)),
    cell("Policy", policyStatus(key)),
    cell("Added", ago(key.created_at)),
    cell("Last used", ago(key.last_used_at)),
    actionsCell(trashButton({
      label: isYou(key.user.id) ? `Delete your key ${key.name}` : `Delete ${key.name} of ${owner}`,
      onclick: (event) => deleteMemberKey(event.currentTarget, key, owner),
    })),
  ));
  elements.keys.replaceChildren(...(rows.length ? rows : [emptyRow(7, "No security key.")]));
}

const STATES = {
  active: "Signed in",
  mfa_required: "Waiting for a security key",
  registration_required: "Waiting for a security key to be registered",
};

function renderSessions(sessions) {
  const rows = sessions.map((found) => row({ dataset: { sessionId: found.id } },
    cell("Device", h("span", { class: "device" }, deviceName(found.user_agent)),
      found.current ? h("span", { class: "badge" }, "This session") : null),
    cell("State", STATES[found.state] ?? found.state),
    cell("Started", ago(found.created_at)),
    cell("Last active", ago(found.last_seen_at, { never: "—" })),
    cell("IP address", h("span", { class: "nowrap" }, found.source_ip ?? "—")),
  ));
  elements.sessions.replaceChildren(...(rows.length ? rows : [emptyRow(5, "Not signed in anywhere.")]));
}

// Signing out: nothing of the member shown stays for the next person at the tab.
export function forgetMember() {
  shown = null;
  elements.title.textContent = "";
  elements.summary.replaceChildren();
  elements.keys.replaceChildren();
  elements.sessions.replaceChildren();
}

whenMemberPageShown(showMember);
elements.endSessions.addEventListener("click", (event) => {
  if (shown) endMemberSessions(event.currentTarget, shown.id, shown.name || shown.id);
});
