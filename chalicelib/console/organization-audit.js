// Organization settings → Audit log: what happened, filtered by action and member, with members
// and keys named and every kind of actor told apart.

import { api } from "./api.js";
import { AUDIT_ACTIONS, describeAction, describeFailure } from "./messages.js";
import { keyName } from "./organization-keys.js";
import { memberNames, nameOf, whenMembersRendered } from "./organization-members.js";
import { isYou, loadMore, organization, screen } from "./organization-screen.js";
import { cell, emptyRow, h, row, run, when } from "./ui.js";

const AUDIT_PAGE = 20;
const elements = screen.audit;
let next = null; // the cursor of the log's next page
// Only the latest request for the audit log is shown: a slower, older one (a refresh started
// before a filter changed) must not overwrite it.
let asked = 0;

// The log as filtered now, rendered unless a later request overtook this one. `signal` is the
// page's, for reloads that must not outlive it.
export async function loadAudit({ signal } = {}) {
  const mine = ++asked;
  const audit = await api.get(auditPath(), { signal });
  return () => {
    if (mine === asked) renderAudit(audit, { append: false });
  };
}

export function forgetAudit() {
  next = null;
  elements.filters.reset();
  renderMemberFilter();
  elements.list.replaceChildren();
  elements.more.hidden = true;
}

function auditPath() {
  const query = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  if (elements.action.value) query.set("action", elements.action.value);
  if (elements.member.value) query.set("user_id", elements.member.value);
  return `org/audit?${query}`;
}

function renderMemberFilter() {
  const select = elements.member;
  const chosen = select.value;
  const names = memberNames();
  const options = [...names].map(([id, name]) => h("option", { value: id }, name === id ? id : `${name} (${id})`));
  // A member filtered on stays offered even when their page of the list is not loaded.
  if (chosen && !names.has(chosen)) options.push(h("option", { value: chosen }, chosen));
  select.replaceChildren(h("option", { value: "" }, "Every member"), ...options);
  select.value = chosen;
}

// What an event was about, in names: the member and, for a key, the key's name.
function about(event) {
  const yours = event.user_id && isYou(event.user_id);
  const member = event.user_id ? (yours ? "You" : nameOf(event.user_id)) : null;
  const named = event.details?.name ?? keyName(event.target);
  if ((event.action.startsWith("key.") || event.action === "mfa.succeeded") && named) {
    if (yours) return `Your “${named}”`;
    return member ? `“${named}” of ${member}` : `“${named}”`;
  }
  if (event.action.startsWith("backup_credentials.")) return event.target ?? "";
  return member ?? (event.target === organization.session.me.org.id ? "The organization" : event.target ?? "");
}

function what(event) {
  const done = describeAction(event.action);
  if (event.action === "mfa.failed" && event.details?.reason) return `${done}: ${describeFailure(event.details.reason)}`;
  if (event.details?.by === "admin" && event.action === "key.deleted") return `${done} by an admin`;
  return done;
}

// Who acted, by the kind the log records beside the name: an IdP may name a member "operator",
// "keyward" or "backup credentials …", so only a member is shown by name alone; every other kind
// is shown as a badge, which no member's name can make.
const ACTOR_BADGES = { operator: "Operator", system: "keyward", backup_credentials: "Backup credentials" };

function actor(event) {
  const badge = ACTOR_BADGES[event.actor_kind];
  if (!badge) return [isYou(event.actor) ? "You" : nameOf(event.actor)];
  const shown = [h("span", { class: "badge" }, badge)];
  // Backup credentials are named by their key ID, which tells one set from another.
  if (event.actor_kind === "backup_credentials") shown.push(" ", event.actor.replace(/^backup credentials /, ""));
  return shown;
}

function renderAudit({ events, next: cursor }, { append }) {
  next = cursor ?? null;
  const rows = events.map((event) => row({},
    cell("When", when(event.at)),
    cell("Who", ...actor(event)),
    cell("What", what(event)),
    cell("About", about(event)),
    cell("From", event.source_ip ?? "—"),
  ));
  const filtered = elements.action.value || elements.member.value;
  if (append) elements.list.append(...rows);
  else elements.list.replaceChildren(...(rows.length ? rows : [emptyRow(5, filtered ? "No events match these filters." : "Nothing recorded yet.")]));
  elements.more.hidden = !next;
  return rows;
}

async function filterAudit(control) {
  await run(control, async () => {
    (await loadAudit())();
    organization.loaded();
  });
}

for (const action of AUDIT_ACTIONS) elements.action.append(h("option", { value: action }, describeAction(action)));

whenMembersRendered(renderMemberFilter);
elements.more.addEventListener("click", (event) => run(event.currentTarget, () => loadMore(auditPath(), next, renderAudit)));
elements.action.addEventListener("change", (event) => filterAudit(event.currentTarget));
elements.member.addEventListener("change", (event) => filterAudit(event.currentTarget));
elements.filters.addEventListener("submit", (event) => event.preventDefault());
