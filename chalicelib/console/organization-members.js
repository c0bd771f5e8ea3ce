// Organization settings → Members: who belongs to the organization, their keys' standing, a link
// to each one's own page (organization-member.js), searching them by user ID and ending their
// sessions; and how members are named across the page.

import { api, segment } from "./api.js";
import { memberStanding } from "./compliance.js";
import { isYou, loadMore, organization, organizationPage, screen } from "./organization-screen.js";
import { memberAddress } from "./organization-sections.js";
import { actionsCell, announce, cell, confirmAction, emptyRow, h, row, run, when } from "./ui.js";

const elements = screen.members;
const names = new Map(); // user ID → how people know them
let shown = []; // the members loaded so far, as the API listed them
let next = null; // the cursor of the list's next page
let onRendered = () => {};
let searched = ""; // the start of the user IDs listed, "" for everyone

// How long typing pauses before the list is searched: one request per word, not per letter.
const SEARCH_PAUSE_MS = 300;

// The members list as searched; every read of it (a reload, the next page) keeps the search.
export function membersPath() {
  return searched ? `org/members?search=${encodeURIComponent(searched)}` : "org/members";
}

export function nameOf(userId) {
  return names.get(userId) || userId;
}

export function memberNames() {
  return names;
}

// `rendered` runs after each render, with the members named so far (the audit log's filter).
export function whenMembersRendered(rendered) {
  onRendered = rendered;
}

// Members by key count, fewest first: a member without a key is the one an admin acts on (the
// table's caption says so). Ties keep the API's order (by user ID).
function byKeyCount(members) {
  return members.map((member, index) => ({ member, index }))
    .sort((a, b) => a.member.key_count - b.member.key_count || a.index - b.index)
    .map(({ member }) => member);
}

// Returns the rows of the members just loaded (a next page's focus goes to the first of them).
export function renderMembers({ members, next: cursor }, { append }) {
  next = cursor ?? null;
  if (!append) {
    names.clear();
    shown = [];
  }
  for (const member of members) names.set(member.id, member.name || member.id);
  shown.push(...members);
  const loaded = new Set(members.map((member) => member.id));
  const rows = byKeyCount(shown).map((member) => {
    const name = member.name || member.id;
    const own = isYou(member.id);
    return row({ dataset: { userId: member.id } },
      cell("Member", h("a", { class: "member-name", href: memberAddress(member.id) }, name), own ? " (you)" : "",
        h("span", { class: "muted block" }, member.email || member.id)),
      cell("Role", member.admin ? "Admin" : "Member"),
      cell("Security keys", h("span", { class: "nowrap" }, String(member.key_count))),
      cell("MFA", memberStanding(member)),
      cell("Last sign-in", when(member.last_login_at)),
      actionsCell(own ? h("span", { class: "badge" }, "You") : h("button", {
        type: "button", class: "quiet", "aria-label": `End the sessions of ${name}`,
        onclick: (event) => endMemberSessions(event.currentTarget, member.id, name),
      }, "End sessions")),
    );
  });
  const none = searched ? `No member's user ID starts with “${searched}”.` : "No members yet.";
  elements.list.replaceChildren(...(rows.length ? rows : [emptyRow(6, none)]));
  elements.more.hidden = !next;
  onRendered();
  return rows.filter((member) => loaded.has(member.dataset.userId));
}

export function forgetMembers() {
  next = null;
  searched = "";
  elements.search.value = "";
  names.clear();
  shown = [];
  elements.list.replaceChildren();
  elements.more.hidden = true;
}

export async function endMemberSessions(button, userId, name) {
  const confirmed = await confirmAction({
    title: `End every session of ${name}?`,
    text: `${name} is signed out everywhere at once and must sign in again (with a security key, if they have one). `
      + "Nothing else changes.",
    confirm: "End sessions",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/members/${segment(userId)}/sessions`);
    await organization.reload();
    announce(`Every session of ${name} was ended.`);
  });
}

elements.more.addEventListener("click", (event) => run(event.currentTarget, () => loadMore(membersPath(), next, renderMembers)));

// The API searches: a search finds members on pages not loaded yet, too.
async function search() {
  const wanted = elements.search.value.trim();
  if (wanted === searched) return;
  searched = wanted;
  renderMembers(await api.get(membersPath(), { signal: organizationPage.signal }), { append: false });
}

elements.search.addEventListener("input", () => organizationPage.after("members-search", SEARCH_PAUSE_MS, () => run(null, search)));
elements.searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  organizationPage.cancel("members-search");
  run(null, search);
});
