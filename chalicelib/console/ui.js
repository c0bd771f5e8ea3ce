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

export function keyId(id) {
  return h("code", { class: "key-id" }, id);
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

export function shortUserAgent(userAgent) {
  if (!userAgent) return "Unknown";
  const browser = /(Edg|Firefox|Chrome|Chromium|Safari)\/([\d]+)/.exec(userAgent);
  const system = /(Windows|Mac OS X|Android|iPhone|Linux)/.exec(userAgent);
  if (!browser) return userAgent.slice(0, 60);
  const name = { Edg: "Edge" }[browser[1]] ?? browser[1];
  return `${name} ${browser[2]}${system ? ` on ${system[1].replace("Mac OS X", "macOS")}` : ""}`;
}
