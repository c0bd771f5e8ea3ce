// Organization settings in sections, each at its own address: #/org/<section>, and a member's own
// page at #/org/members/<user ID>. The cards stay the modules' own; this module only says which
// section each card belongs to and shows the cards of the section the address names, so that
// back and forward, a reload and a pasted link all open the same section.

import { organization, screen } from "./organization-screen.js";

export const SECTIONS = {
  overview: "Overview",
  members: "Members",
  keys: "Security keys",
  rollout: "Roll-out",
  policy: "Policy",
  "backup-credentials": "Backup credentials",
  "enrolment-passes": "Enrolment passes",
  webhooks: "Webhooks",
  "relying-parties": "Relying parties",
  "audit-log": "Audit log",
};

// The cards other modules build, by ID; a card the page knows of by neither an ID here nor its own
// data-section belongs to the section of the card before it.
const BUILT_CARDS = {
  rollout: "rollout",
  "policy-card": "policy",
  "webhooks-card": "webhooks",
  "outbox-card": "webhooks",
  "relying-parties-card": "relying-parties",
};

const DEFAULT_SECTION = "overview";
const MEMBER_PREFIX = "#/org/members/";

let onMemberPage = async () => {}; // set by organization-member.js: shows a member's page

export function whenMemberPageShown(show) {
  onMemberPage = show;
}

// Whether an address is one of organization settings' (the older #/organization included).
export function isOrganizationAddress(hash) {
  return hash === "#/organization" || hash.startsWith("#/org/");
}

export function sectionAddress(section) {
  return `#/org/${section}`;
}

export function memberAddress(userId) {
  return `${MEMBER_PREFIX}${encodeURIComponent(userId)}`;
}

// What an address names: a section, or a member's page (section "member" with their user ID).
function place(hash) {
  if (hash.startsWith(MEMBER_PREFIX) && hash.length > MEMBER_PREFIX.length) {
    try {
      return { section: "member", userId: decodeURIComponent(hash.slice(MEMBER_PREFIX.length)) };
    } catch {
      return { section: DEFAULT_SECTION };
    }
  }
  const section = hash.startsWith("#/org/") ? hash.slice("#/org/".length) : "";
  return { section: Object.hasOwn(SECTIONS, section) ? section : DEFAULT_SECTION };
}

let shown = null; // the place shown: { section, userId }

export function shownSection() {
  return shown?.section ?? null;
}

export function shownMember() {
  return shown?.section === "member" ? shown.userId : null;
}

function cards() {
  return [...screen.root.querySelectorAll(":scope > section.card")];
}

function sectionOf(card, previous) {
  return card.dataset.section ?? BUILT_CARDS[card.id] ?? previous ?? DEFAULT_SECTION;
}

// Shows the cards of `section` only, and marks its link as the page shown.
function showCards(section) {
  let previous = null;
  for (const card of cards()) {
    const own = sectionOf(card, previous);
    previous = own;
    card.classList.toggle("elsewhere", own !== section);
  }
  const current = section === "member" ? "members" : section;
  for (const link of screen.sections.links) {
    if (link.getAttribute("href") === sectionAddress(current)) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// The heading of what is shown: the first shown card's.
function heading() {
  const card = cards().find((each) => !each.classList.contains("elsewhere") && !each.hidden);
  return card?.querySelector("h2") ?? null;
}

// Shows the section the address names (an unknown one: the overview, under its own address).
// `focus` moves focus to the section's heading, as a new page would.
export async function showSection({ focus = false } = {}) {
  const found = place(location.hash);
  const address = found.section === "member" ? location.hash : sectionAddress(found.section);
  if (location.hash !== address) history.replaceState(null, "", address);
  if (found.section === "member") await onMemberPage(found.userId);
  shown = found;
  showCards(found.section);
  const title = heading();
  const name = found.section === "member" ? `${title?.textContent.trim() ?? ""} · Members` : SECTIONS[found.section];
  document.title = `${name} · Organization settings · keyward`;
  if (focus && title) {
    title.setAttribute("tabindex", "-1");
    title.focus();
  }
}

// Brings a section up without a visit of its own (a secret created from another section shows
// where it belongs); its address joins the history as a link to it would.
export function revealSection(section) {
  if (shownSection() === section) return;
  history.pushState(null, "", sectionAddress(section));
  shown = { section };
  showCards(section);
  document.title = `${SECTIONS[section]} · Organization settings · keyward`;
}

// Signing out: the next person starts from the address they open.
export function forgetSection() {
  shown = null;
}

organization.reveal = revealSection;
