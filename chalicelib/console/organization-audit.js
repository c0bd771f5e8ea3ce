// Organization settings → Audit log: what happened, filtered by action, by who acted, by the
// member it concerns and by a range of days, with members and keys named and every kind of actor
// told apart; and the log as filtered saved as a file (NDJSON or CSV, made by the API's export).

import { api } from "./api.js";
import { AUDIT_ACTIONS, describeAction, describeFailure } from "./messages.js";
import { keyName } from "./organization-keys.js";
import { memberNames, nameOf, whenMembersRendered } from "./organization-members.js";
import { isYou, loadMore, organization, organizationPage, screen } from "./organization-screen.js";
import { acceptField, cell, emptyRow, h, refuseField, row, run, when } from "./ui.js";

const AUDIT_PAGE = 20;
// An export from the console holds at most this many events (twenty of the API's answers), all
// in the tab's memory until saved; a longer range is narrowed, or exported with the API itself.
const EXPORT_CAP = 100_000;
const EXPORT_TYPES = { ndjson: "application/x-ndjson", csv: "text/csv" };
const elements = screen.audit;
const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const countFormat = new Intl.NumberFormat();
let next = null; // the cursor of the log's next page
// Only the latest request for the audit log is shown: a slower, older one (a refresh started
// before a filter changed) must not overwrite it.
let asked = 0;
// The filters the list shows, as last applied; an export exports the same events.
let applied = {};
let exporting = null; // the running export's AbortController

// The log as filtered now (or as `filters` would filter it), rendered unless a later request
// overtook this one. `signal` is the page's, for reloads that must not outlive it.
export async function loadAudit({ signal, filters = applied } = {}) {
  const mine = ++asked;
  const audit = await api.get(auditPath(filters), { signal });
  return () => {
    if (mine !== asked) return;
    applied = filters;
    renderShown();
    renderAudit(audit, { append: false });
  };
}

export function forgetAudit() {
  next = null;
  exporting?.abort();
  applied = {};
  elements.filters.reset();
  for (const field of [elements.since, elements.until]) acceptField(field);
  renderMemberFilter();
  renderActorChoices();
  renderShown();
  elements.exportProgress.textContent = "";
  elements.list.replaceChildren();
  elements.more.hidden = true;
}

// A day of a date field as the moment it starts in the admin's time zone; `after` days later.
function startOfDay(value, after = 0) {
  const [year, month, day] = value.split("-").map(Number);
  // Not new Date(year, …), which takes a year below 100 as 19xx.
  const moment = new Date(0);
  moment.setFullYear(year, month - 1, day + after);
  moment.setHours(0, 0, 0, 0);
  return moment;
}

// The API takes UTC timestamps; it needs no milliseconds for the start of a day.
function utc(moment) {
  return moment.toISOString().replace(/\.000Z$/, "Z");
}

// The filters as the form holds them. The last day is whole: up to the start of the next.
function filtersOfForm() {
  const sinceDay = elements.since.value;
  const untilDay = elements.until.value;
  return {
    action: elements.action.value,
    actor: elements.actor.value.trim(),
    user_id: elements.member.value,
    sinceDay,
    untilDay,
    since: sinceDay ? utc(startOfDay(sinceDay)) : "",
    until: untilDay ? utc(startOfDay(untilDay, 1)) : "",
  };
}

function filterQuery(filters) {
  const query = new URLSearchParams();
  for (const name of ["action", "actor", "user_id", "since", "until"]) {
    if (filters[name]) query.set(name, filters[name]);
  }
  return query;
}

function isFiltered(filters) {
  return [...filterQuery(filters).keys()].length > 0;
}

function auditPath(filters = applied) {
  const query = filterQuery(filters);
  query.set("limit", String(AUDIT_PAGE));
  return `org/audit?${query}`;
}

// What the list shows, in words, beside it.
function renderShown() {
  const parts = [];
  if (applied.action) parts.push(`what happened: ${describeAction(applied.action)}`);
  if (applied.actor) parts.push(`who acted: ${named(applied.actor)}`);
  if (applied.user_id) parts.push(`about: ${named(applied.user_id)}`);
  if (applied.sinceDay) parts.push(`from ${dayFormat.format(startOfDay(applied.sinceDay))}`);
  if (applied.untilDay) parts.push(`to ${dayFormat.format(startOfDay(applied.untilDay))} (the whole day)`);
  if (applied.sinceDay || applied.untilDay) parts.push(`days in ${timeZone}`);
  elements.shown.textContent = parts.length ? `Showing events with ${parts.join("; ")}.` : "Showing every event.";
}

function named(userId) {
  const name = nameOf(userId);
  return name === userId ? userId : `${name} (${userId})`;
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

// Who can have acted, offered as the admin types: the members on the page, the operator and keyward.
function renderActorChoices() {
  const members = [...memberNames()].map(([id, name]) => h("option", { value: id }, name === id ? "" : name));
  elements.actors.replaceChildren(
    ...members,
    h("option", { value: "operator" }, "The operator: changes made outside keyward"),
    h("option", { value: "keyward" }, "keyward itself"),
  );
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
  if (append) elements.list.append(...rows);
  else elements.list.replaceChildren(...(rows.length ? rows : [emptyRow(5, isFiltered(applied) ? "No events match these filters." : "Nothing recorded yet.")]));
  elements.more.hidden = !next;
  return rows;
}

// Applies the form's filters: the list shows them once their events have come.
async function applyFilters(control) {
  const unfinished = [elements.since, elements.until].find((field) => field.validity.badInput);
  if (unfinished) {
    refuseField(unfinished, "Enter a whole date, or leave the field empty.");
    return;
  }
  const filters = filtersOfForm();
  if (filters.sinceDay && filters.untilDay && filters.untilDay < filters.sinceDay) {
    refuseField(elements.until, "“To” must not be before “From”.");
    return;
  }
  await run(control, async () => {
    // The page's request: signing out before the events come leaves nothing to render them for.
    (await loadAudit({ filters, signal: organizationPage.signal }))();
    organization.loaded();
  }, { fields: { InvalidTimeRange: filters.untilDay ? elements.until : elements.since } });
}

async function clearFilters(control) {
  elements.filters.reset();
  for (const field of [elements.since, elements.until]) acceptField(field);
  await applyFilters(control);
}

// --- export -------------------------------------------------------------------------------------

// The filtered log, oldest first, as one file: the API's export answers up to 5,000 events at a
// time, and each answer's Keyward-Next-Cursor asks for the next.
async function exportAudit(format, control) {
  const controller = new AbortController();
  exporting = controller;
  const left = organizationPage.signal; // aborted when the page is left or the session ends
  const signal = AbortSignal.any([controller.signal, left]);
  const filters = applied;
  const other = format === "csv" ? elements.exportNdjson : elements.exportCsv;
  other.disabled = true;
  elements.exportCancel.hidden = false;
  progress("Exporting the audit log…");
  // The cancel button goes before run() ends, so that focus, if it was there, returns to `control`.
  const finish = () => {
    if (exporting === controller) exporting = null;
    other.disabled = false;
    elements.exportCancel.hidden = true;
  };
  await run(control, async () => {
    try {
      await exportPages(format, filters, signal);
    } finally {
      finish();
    }
  });
  if (left.aborted) progress("");
  else if (controller.signal.aborted) progress("Export cancelled: nothing was saved.");
}

async function exportPages(format, filters, signal) {
  const parts = [];
  let count = 0;
  let cursor = null;
  let capped = false;
  do {
    const query = filterQuery(filters);
    query.set("format", format);
    if (cursor) query.set("next", cursor);
    const { text, headers } = await api.file(`org/audit/export?${query}`, { signal });
    parts.push(text);
    count += format === "csv" ? csvRecords(text) - (cursor ? 0 : 1) : lines(text);
    cursor = headers.get("Keyward-Next-Cursor");
    if (cursor) progress(`Exporting the audit log: ${countFormat.format(count)} events so far…`);
    capped = Boolean(cursor) && count >= EXPORT_CAP;
  } while (cursor && !capped);
  const name = fileName(format);
  save(new Blob(parts, { type: EXPORT_TYPES[format] }), name);
  progress(capped
    ? `Saved the oldest ${countFormat.format(count)} events of the range as ${name}: the console exports at most ${countFormat.format(EXPORT_CAP)} at a time. Narrow the dates to export the rest.`
    : `Saved ${countFormat.format(count)} ${count === 1 ? "event" : "events"} as ${name}.`);
}

function progress(text) {
  elements.exportProgress.textContent = text;
}

function lines(text) {
  return text.match(/\n/g)?.length ?? 0;
}

// CSV rows end with CRLF; a line break inside a quoted cell ends none.
function csvRecords(text) {
  let records = 0;
  let quoted = false;
  for (const character of text) {
    if (character === '"') quoted = !quoted;
    else if (character === "\n" && !quoted) records += 1;
  }
  return records;
}

function fileName(format) {
  const today = new Date();
  const day = [today.getFullYear(), today.getMonth() + 1, today.getDate()].map((n) => String(n).padStart(2, "0")).join("-");
  return `keyward-audit-${organization.session.me.org.id}-${day}.${format}`;
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  h("a", { href: url, download: name }).click();
  // Not a page timer (page.js): the download is the admin's once started, whatever page comes next.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

for (const action of AUDIT_ACTIONS) elements.action.append(h("option", { value: action }, describeAction(action)));
elements.timeZone.textContent = timeZone;
renderShown();

whenMembersRendered(() => {
  renderMemberFilter();
  renderActorChoices();
  renderShown(); // with the names of the members it filters by
});
elements.more.addEventListener("click", (event) => run(event.currentTarget, () => loadMore(auditPath(), next, renderAudit)));
// A choice from a list applies at once; typed filters and dates apply with Apply (or Enter).
elements.action.addEventListener("change", (event) => applyFilters(event.currentTarget));
elements.member.addEventListener("change", (event) => applyFilters(event.currentTarget));
elements.filters.addEventListener("submit", (event) => {
  event.preventDefault();
  applyFilters(event.submitter ?? elements.apply);
});
elements.clear.addEventListener("click", (event) => clearFilters(event.currentTarget));
elements.exportNdjson.addEventListener("click", (event) => exportAudit("ndjson", event.currentTarget));
elements.exportCsv.addEventListener("click", (event) => exportAudit("csv", event.currentTarget));
elements.exportCancel.addEventListener("click", () => exporting?.abort());
