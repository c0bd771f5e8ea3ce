// What every screen of the console shares: the elements around the screens, building elements
// safely, the status and alert regions, the confirmation dialog, and how dates and keys are shown.

import { describe } from "./messages.js";
import { shownPage } from "./page.js";

// Looks up an element by ID: for the screens' lookup modules (*-screen.js) and the frame below,
// the only places that look elements up.
export const $ = (id) => document.getElementById(id);

// The elements around the screens, looked up in this one place: the top bar (app.js), the
// messages, the loading note, the confirmation dialog, and the screens themselves.
export const frame = {
  skipLink: document.querySelector(".skip-link"),
  main: $("main"),
  nav: { bar: $("nav"), personal: $("nav-personal"), organization: $("nav-organization") },
  account: { box: $("account"), name: $("account-name"), signOut: $("sign-out") },
  messages: $("messages"),
  regions: { status: $("status"), alert: $("alert") },
  loading: $("loading"),
  screens: [...document.querySelectorAll(".screen")],
  confirm: {
    dialog: $("confirm"),
    title: $("confirm-title"),
    text: $("confirm-text"),
    choice: $("confirm-choice"),
    choiceInput: $("confirm-choice-input"),
    choiceLabel: $("confirm-choice-label"),
    ok: $("confirm-ok"),
    cancel: $("confirm-cancel"),
  },
};

// The screen shown, if any.
export function shownScreen() {
  return frame.screens.find((screen) => !screen.hidden) ?? null;
}

// Elements are built with textContent only: names and user agents come from users.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "onclick") element.addEventListener("click", value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// The status region announces what succeeded; the alert region what went wrong. Each is shown
// next to the control that caused it (a phone shows only part of the page), and back at the top of
// the page when nothing on screen caused it.
let acting = null; // where the running action's messages belong

function anchorFor(control) {
  if (!control) return null;
  // Below a row of fields or a one-line form rather than inside its flex layout; a row's buttons
  // are re-rendered with their list, the table itself stays.
  return control.closest(".field-row, form.add-key, form.rename")
    ?? control.closest("table, form, .button-row, .switch-row, .secret-box, .field") ?? control;
}

// The status and alert regions move beside the control a message is about; a list re-rendered
// with one beside its row takes it along, and the next message brings it back to the top.
const REGIONS = {
  status: { class: "status", role: "status", "aria-live": "polite" },
  alert: { class: "alert", role: "alert", "aria-live": "assertive" },
};

function region(id) {
  if (!frame.regions[id]) {
    frame.regions[id] = h("p", { id, ...REGIONS[id], hidden: id === "alert" });
    frame.messages.append(frame.regions[id]);
  }
  return frame.regions[id];
}

function place(message, near) {
  const anchor = near === undefined ? acting : anchorFor(near);
  if (anchor && anchor.isConnected && anchor.checkVisibility()) {
    if (anchor.nextElementSibling !== message) anchor.after(message);
    message.classList.add("inline");
  } else {
    frame.messages.append(message);
    message.classList.remove("inline");
  }
}

export function announce(message, { near } = {}) {
  region("alert").hidden = true;
  region("alert").textContent = "";
  place(region("status"), near);
  region("status").textContent = message;
  inView(region("status"));
}

// A message beside its control is scrolled to, as little as needed, so that it is read.
function inView(region) {
  if (region.classList.contains("inline")) region.scrollIntoView({ block: "nearest" });
}

export function showError(error, { near } = {}) {
  // A session that ended or must take a step first is handled by the screen it leads to.
  if (error?.name === "ApiError" && error.handled) return;
  // A request of a page that was left meanwhile: nobody is waiting for its answer.
  if (error?.name === "AbortError") return;
  // A read that could not reach keyward: the offline banner says so, and reads again (connection.js).
  if (error?.name === "ApiError" && error.unreachable && error.method === "GET") return;
  region("status").textContent = "";
  const alert = region("alert");
  place(alert, near);
  alert.textContent = typeof error === "string" ? error : describe(error);
  alert.hidden = false;
  inView(alert);
  if (error?.name !== "ApiError" && error?.name !== "Explained" && typeof error !== "string") console.error(error);
}

// The fields marked invalid, until their value is edited or the messages are cleared.
const refused = new Set();

// A field whose value was refused: marked invalid, described by the message beside it, focused.
export function refuseField(field, error) {
  showError(error, { near: field });
  refused.add(field);
  field.setAttribute("aria-invalid", "true");
  field.setAttribute("aria-describedby", [field.dataset.describedBy, "alert"].filter(Boolean).join(" "));
  field.focus();
  field.addEventListener("input", () => acceptField(field), { once: true });
}

export function acceptField(field) {
  refused.delete(field);
  field.removeAttribute("aria-invalid");
  if (field.dataset.describedBy) field.setAttribute("aria-describedby", field.dataset.describedBy);
  else field.removeAttribute("aria-describedby");
}

export function clearMessages() {
  for (const field of [...refused]) acceptField(field);
  region("status").textContent = "";
  region("alert").textContent = "";
  region("alert").hidden = true;
  frame.messages.append(region("status"), region("alert"));
}

// Runs an action started by `control`: the control is disabled meanwhile, any error is shown next
// to it, and focus comes back to it (a disabled button drops focus to the body). `fields` maps a
// reason code to the field it refuses, which is then marked invalid and focused. A refusal that
// may mean the page showed what is no longer so (api.js) reloads the page shown, so that no
// control stays as the refused change would have left it.
export async function run(control, action, options = {}) {
  const hadFocus = control && document.activeElement === control;
  let refusal = null;
  const outcome = await attempt(control, action, options, (error) => {
    refusal = error;
  });
  if (refusal?.pageMayBeStale || refusal?.cause?.pageMayBeStale) {
    try {
      await shownPage()?.reload();
    } catch (error) {
      showError(error);
    }
    if (hadFocus && lostFocus()) giveFocusBack(control);
  }
  return outcome;
}

async function attempt(control, action, { fields = {} }, refused) {
  const wasDisabled = control?.disabled;
  const hadFocus = control && document.activeElement === control;
  const previous = acting;
  acting = anchorFor(control);
  if (control) {
    control.disabled = true;
    control.setAttribute("aria-busy", "true");
  }
  try {
    return await action();
  } catch (error) {
    refused(error);
    const field = fields[error?.code];
    if (field && !error.handled) refuseField(field, error);
    else showError(error);
    return undefined;
  } finally {
    acting = previous;
    if (control && control.isConnected) {
      control.disabled = wasDisabled;
      control.removeAttribute("aria-busy");
    }
    if (hadFocus && lostFocus()) giveFocusBack(control);
  }
}

function giveFocusBack(control) {
  if (control.isConnected && !control.disabled && control.checkVisibility()) control.focus();
  else focusScreen();
}

function lostFocus() {
  const focused = document.activeElement;
  return !focused || focused === document.body || !focused.isConnected || !focused.checkVisibility();
}

// The visible screen's heading: where focus goes when the control it was on is gone.
export function focusScreen() {
  shownScreen()?.querySelector("h1")?.focus();
}

// A modal <dialog> that asks before anything destructive; resolves to true only on the confirm button.
// `choice` ({label, checked}) adds a checkbox to the question; its answer is left in choice.checked.
export function confirmAction({ title, text, confirm, danger = true, choice = null }) {
  const { dialog, ok, cancel } = frame.confirm;
  frame.confirm.choice.hidden = !choice;
  frame.confirm.choiceInput.checked = Boolean(choice?.checked);
  frame.confirm.choiceLabel.textContent = choice?.label ?? "";
  const opener = document.activeElement;
  frame.confirm.title.textContent = title;
  frame.confirm.text.textContent = text;
  ok.textContent = confirm;
  ok.className = danger ? "danger" : "primary";
  return new Promise((resolve) => {
    const finish = (answer) => {
      if (choice) choice.checked = answer && frame.confirm.choiceInput.checked;
      ok.removeEventListener("click", onOk);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      // Back to where the user was, or to the screen's heading when that control is gone.
      if (opener && opener.isConnected && !opener.disabled) opener.focus();
      else focusScreen();
      resolve(answer);
    };
    const onOk = () => finish(true);
    const onCancel = () => finish(false);
    const onClose = () => finish(false); // Escape
    ok.addEventListener("click", onOk);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    cancel.focus();
  });
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function when(iso, { never = "Never" } = {}) {
  if (!iso) return h("span", { class: "muted" }, never);
  return h("time", { datetime: iso, title: iso }, dateFormat.format(new Date(iso)));
}

// "Today", "Yesterday", "3 days ago", "Never": how long ago, in words, with the exact date and
// time a hover or a screen reader away. Days are the local calendar's.
const DAY = 24 * 60 * 60 * 1000;
const relativeFormat = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

export function ago(iso, { never = "Never" } = {}) {
  if (!iso) return h("span", { class: "muted nowrap" }, never);
  const then = new Date(iso);
  const startOfDay = (date) => new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
  const days = Math.round((startOfDay(new Date()) - startOfDay(then)) / DAY);
  let words;
  if (days <= 0) words = "today";
  else if (days < 30) words = relativeFormat.format(-days, "day");
  else if (days < 365) words = relativeFormat.format(-Math.floor(days / 30), "month");
  else words = relativeFormat.format(-Math.floor(days / 365), "year");
  words = `${words[0].toUpperCase()}${words.slice(1)}`;
  return h("time", { datetime: iso, title: dateFormat.format(then), class: "nowrap" }, words);
}

// Copies text to the clipboard and says so; true when it did. A browser that refuses (no
// permission, an insecure page) gets the text selected instead, with the keys that copy it:
// `select` is the element that holds the text, made to show all of it first. `what` names the text
// ("the signing secret"), `plural` when it is several things.
export async function copyText(text, { what, plural = false, select = null, near }) {
  const [was, is, it] = plural ? ["were", "are", "them"] : ["was", "is", "it"];
  try {
    await navigator.clipboard.writeText(text);
    announce(`${what[0].toUpperCase()}${what.slice(1)} ${was} copied to the clipboard.`, { near });
    return true;
  } catch {
    if (!select) {
      showError("The browser did not allow copying. Select the text and copy it yourself.", { near });
      return false;
    }
    if (select.textContent !== text) select.textContent = text;
    const range = document.createRange();
    range.selectNodeContents(select);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    announce(`The browser did not allow copying: ${what} ${is} selected, press Ctrl+C (⌘C on a Mac) to copy ${it}.`,
      { near });
    return false;
  }
}

// Opaque IDs (keys, sessions, credentials, clients) are shown by their first 8 characters and an
// ellipsis: enough to tell them apart on a screen, short enough not to widen a table. Only the
// eye gets the short form (CSS cuts it): the element's text, title and accessible name are the
// whole ID, and the Copy button copies all of it (or, refused the clipboard, shows and selects it).
export function shortId(id, { what = "ID", className = "" } = {}) {
  const code = h("code", { class: `short-id ${className}`.trim(), title: id }, id);
  const button = h("button", {
    type: "button", class: "quiet small", "aria-label": `Copy the ${what} ${id}`,
    onclick: () => {
      code.classList.add("whole");
      return copyText(id, { what: `the ${what}`, select: code, near: button })
        .then((copied) => copied && code.classList.remove("whole"));
    },
  }, "Copy");
  return h("span", { class: "id-with-copy" }, code, button);
}

export function keyId(id) {
  return shortId(id, { what: "key ID", className: "key-id" });
}

// Whether a key counts under the organization's authenticator policy, in words, with the rules it
// falls short of (the API's policy_shortfalls).
const CERTIFIED = /^(NOT_)?FIDO_CERTIFIED(_|$)/;

function shortfallWords(code, key) {
  if (code === "SyncedCredentialNotAllowed") return "a synced passkey, where only device-bound keys count";
  if (code === "AttestationRequired") return "it does not prove its model";
  if (code === "AuthenticatorNotAllowed" && key.model_status && !CERTIFIED.test(key.model_status)) {
    return `its model was reported ${key.model_status.toLowerCase().replaceAll("_", " ")}`;
  }
  if (code === "AuthenticatorNotAllowed") return "the policy does not allow its model";
  return code;
}

export function policyShortfalls(key) {
  return (key.policy_shortfalls ?? []).map((code) => shortfallWords(code, key)).join("; ");
}

export function policyStatus(key) {
  if (key.policy_compliant) return "accepted by the policy";
  const why = policyShortfalls(key);
  return why ? `not accepted: ${why}` : "not accepted by the policy";
}

// A labelled region around a table, which scrolls sideways on its own when the table is wider
// than the screen, rather than the page scrolling or the table's words breaking.
export function scrolling(table, label) {
  return h("div", { class: "table-scroll", role: "region", "aria-label": label, tabindex: 0 }, table);
}

// Table rows and cells say what they are: narrow screens restyle them as stacked cards, and a
// browser may drop a table's meaning along with its table layout.
export function row(attributes, ...cells) {
  return h("tr", { role: "row", ...attributes }, ...cells);
}

// A cell that names its column, shown beside its value when rows stack. Its content is one
// element, so that a stacked row's label and value stay side by side.
export function cell(label, ...children) {
  return h("td", { role: "cell", "data-label": label }, h("div", { class: "value" }, ...children));
}

// The last cell of a row: its buttons.
export function actionsCell(...buttons) {
  return h("td", { role: "cell", class: "actions" }, h("div", { class: "row-actions" }, ...buttons));
}

export function emptyRow(columns, text) {
  return row({ class: "empty" }, h("td", { role: "cell", colspan: columns }, text));
}

const TRASH_PATH =
  "M9 3h6l1 2h4v2H4V5h4l1-2zm-3 6h12l-1 12H7L6 9zm4 2v8h2v-8h-2zm4 0v8h2v-8h-2z";

// The trash icon button; its accessible name says what it deletes.
export function trashButton({ label, onclick, disabled = false, describedBy = null }) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", TRASH_PATH);
  svg.append(path);
  return h("button", {
    type: "button", class: "icon danger", "aria-label": label, title: label, onclick, disabled,
    "aria-describedby": describedBy,
  }, svg);
}

let firstScreen = true;

export function showScreen(id) {
  for (const screen of frame.screens) screen.hidden = screen.id !== id;
  frame.loading.hidden = true;
  const heading = frame.screens.find((screen) => screen.id === id)?.querySelector("h1");
  // Each screen names the tab (and the history entry) after itself.
  if (heading) document.title = `${heading.textContent.trim()} · keyward`;
  // A screen that replaces another takes focus to its heading; the page's first screen leaves focus
  // at the start of the document, so that the skip link is the keyboard's first stop.
  if (!firstScreen) heading?.focus();
  firstScreen = false;
}

// The device a session was opened from, in words: "Chrome on macOS", "Safari on iPhone". A user
// agent names several browsers at once (Edge and Opera also say Chrome, Chrome also says Safari),
// so the more particular names are looked for first.
const BROWSERS = [
  ["Edge", /\bEdg(e|A|iOS)?\//], ["Opera", /\bOPR\//], ["Samsung Internet", /\bSamsungBrowser\//],
  ["Firefox", /\b(Firefox|FxiOS)\//], ["Chrome", /\b(Chrome|CriOS|HeadlessChrome)\//], ["Chromium", /\bChromium\//],
  ["Safari", /\bVersion\/[\d.]+.*\bSafari\//],
];
const SYSTEMS = [
  ["iPhone", /\biPhone\b/], ["iPad", /\biPad\b/], ["Android", /\bAndroid\b/], ["ChromeOS", /\bCrOS\b/],
  ["Windows", /\bWindows\b/], ["macOS", /\bMac OS X\b|\bMacintosh\b/], ["Linux", /\bLinux\b/],
];

export function deviceName(userAgent) {
  if (!userAgent) return "Unknown device";
  const browser = BROWSERS.find(([, pattern]) => pattern.test(userAgent))?.[0];
  const system = SYSTEMS.find(([, pattern]) => pattern.test(userAgent))?.[0];
  if (browser && system) return `${browser} on ${system}`;
  if (browser || system) return browser ?? `A browser on ${system}`;
  return "Unknown device";
}
