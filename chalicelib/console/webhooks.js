// Organization settings → Webhooks, for admins: the endpoints the organization's audit events are
// posted to (signed), the events each is sent, their recent deliveries in words, a test event and
// an event sent again, and, on the local stage, the outbox of notification mail that SES on moto
// accepted.

import { api, segment } from "./api.js";
import { describeAction } from "./messages.js";
import { EVERY_EVENT, eventChooser } from "./webhook-events.js";
import { describeState, enableButton } from "./webhook-state.js";
import { screen } from "./organization-screen.js";
import {
  actionsCell, announce, cell, confirmAction, copyText, emptyRow, h, row, run, scrolling, showError, trashButton, when,
} from "./ui.js";

let card = null; // built on first show, then kept: its elements by name
// A test event or an event sent again is taken up by the delivery function within seconds.
const OUTCOME_WAIT_MS = 20_000;
const OUTCOME_POLL_MS = 500;

export async function showWebhooks() {
  card ??= build();
  const [{ webhooks }, outbox] = await Promise.all([api.get("org/webhooks"), localOutbox()]);
  renderWebhooks(webhooks);
  renderOutbox(outbox);
}

// Signing out: no endpoint, delivery or secret of this organization stays for the next person.
export function forgetWebhooks() {
  if (!card) return;
  card.form.reset();
  card.chooser.reset();
  card.newSecret.textContent = "";
  card.newWebhook.hidden = true;
  card.list.replaceChildren();
  card.deliveries.hidden = true;
  card.deliveryList.replaceChildren();
}

// The local outbox exists only on the local stage; elsewhere the route is unknown.
async function localOutbox() {
  try {
    return (await api.get("dev/outbox")).mail;
  } catch (error) {
    if (error?.status === 404) return null;
    throw error;
  }
}

function build() {
  const header = (...names) => h("thead", { role: "rowgroup" }, h("tr", { role: "row" },
    ...names.map((name) => h("th", { role: "columnheader", scope: "col" }, name))));
  const built = {
    url: h("input", { id: "webhook-url", type: "url", required: true, placeholder: "https://siem.example.com/keyward" }),
    chooser: eventChooser({ idPrefix: "webhook-event" }),
    add: h("button", { type: "submit", id: "webhook-add" }, "Add webhook"),
    newSecret: h("code", { id: "webhook-new-secret" }),
    copySecret: h("button", { type: "button", id: "webhook-copy-secret" }, "Copy secret"),
    secretDone: h("button", { type: "button", id: "webhook-secret-done", class: "quiet" }, "I have saved it"),
    list: h("tbody", { role: "rowgroup", id: "webhook-list" }),
    deliveriesTitle: h("h3", { id: "webhook-deliveries-title", tabindex: "-1" }, "Deliveries"),
    deliveryList: h("tbody", { role: "rowgroup", id: "webhook-delivery-list" }),
    outboxRefresh: h("button", { type: "button", id: "outbox-refresh" }, "Refresh outbox"),
    outboxList: h("ul", { id: "outbox-list", class: "plain" }),
  };
  built.form = h("form", { id: "webhook-form" },
    h("label", { for: "webhook-url" }, "Endpoint URL"),
    built.url,
    built.chooser.fieldset,
    built.add);
  built.newWebhook = h("div", { id: "webhook-new", class: "secret-box", hidden: true, tabindex: "-1", "aria-labelledby": "webhook-new-title" },
    h("h3", { id: "webhook-new-title" }, "Signing secret of the new webhook"),
    h("p", {}, h("strong", {}, "Copy the secret now: it is shown only this once.")),
    built.newSecret,
    h("div", { class: "button-row" }, built.copySecret, built.secretDone));
  built.deliveries = h("div", { id: "webhook-deliveries", hidden: true },
    built.deliveriesTitle,
    scrolling(h("table", { role: "table", class: "responsive", "aria-labelledby": "webhook-deliveries-title" },
      header("When", "Event", "Outcome", "Attempts", h("span", { class: "visually-hidden" }, "Actions")),
      built.deliveryList), "Deliveries: table"));
  built.section = h("section", { class: "card", "aria-labelledby": "webhooks-title", id: "webhooks-card" },
    h("h2", { id: "webhooks-title" }, "Webhooks"),
    h("p", { class: "muted" }, "keyward posts the organization's audit events to these endpoints as they happen, ",
      "signed as Standard Webhooks specifies. Every event also goes to the deployment's EventBridge bus."),
    built.form,
    built.newWebhook,
    scrolling(h("table", { role: "table", class: "responsive", "aria-labelledby": "webhooks-title" },
      header("URL", "Events", "State", "Created", h("span", { class: "visually-hidden" }, "Actions")),
      built.list), "Webhooks: table"),
    built.deliveries);
  built.outbox = h("section", { class: "card", "aria-labelledby": "outbox-title", id: "outbox-card", hidden: true },
    h("h2", { id: "outbox-title" }, "Local outbox ", h("span", { class: "badge" }, "local stage")),
    h("p", { class: "muted" }, "The notification mail keyward sent through SES on moto, newest first. ",
      "The same list: ", h("code", {}, "python -m devstack mail"), "."),
    built.outboxRefresh,
    built.outboxList);
  screen.cards.audit.after(built.section, built.outbox);

  built.form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(built.add, addWebhook);
  });
  built.secretDone.addEventListener("click", forgetSecret);
  built.copySecret.addEventListener("click", copySecret);
  built.outboxRefresh.addEventListener("click", (event) => run(event.currentTarget, async () => {
    renderOutbox(await localOutbox());
    announce("Outbox refreshed.");
  }));
  return built;
}

function renderWebhooks(webhooks) {
  const rows = webhooks.map((webhook) => row({},
    cell("URL", h("code", {}, webhook.url)),
    cell("Events", webhook.events.includes(EVERY_EVENT) ? "All events" : webhook.events.join(", ")),
    cell("State", describeState(webhook)),
    cell("Created", when(webhook.created_at)),
    actionsCell(
      enableButton(webhook, { reload: async () => renderWebhooks((await api.get("org/webhooks")).webhooks) }),
      h("button", { type: "button", class: "quiet", "aria-label": `Deliveries to ${webhook.url}`,
        onclick: (event) => run(event.currentTarget, () => showDeliveries(webhook)) }, "Deliveries"),
      h("button", { type: "button", class: "quiet", "aria-label": `Send test event to ${webhook.url}`,
        onclick: (event) => run(event.currentTarget, () => sendTestEvent(webhook)) }, "Send test event"),
      trashButton({ label: `Delete webhook ${webhook.url}`, onclick: (event) => deleteWebhook(event.currentTarget, webhook) }),
    ),
  ));
  card.list.replaceChildren(...(rows.length ? rows : [emptyRow(5, "No webhooks yet.")]));
}

async function addWebhook() {
  const events = card.chooser.chosen();
  if (!events.length) {
    showError("Choose the events to send: check “All events” or at least one event.", { near: card.chooser.fieldset });
    return;
  }
  const created = await api.post("org/webhooks", { url: card.url.value.trim(), events });
  card.newSecret.textContent = created.secret;
  card.newWebhook.hidden = false;
  card.newWebhook.focus();
  card.url.value = "";
  renderWebhooks((await api.get("org/webhooks")).webhooks);
  announce(`Webhook ${created.webhook.url} added. Copy its signing secret now: it is shown only once.`);
}

function forgetSecret() {
  // Once dismissed, the secret is gone from the page for good.
  card.newSecret.textContent = "";
  card.newWebhook.hidden = true;
  card.copySecret.textContent = "Copy secret";
  card.url.focus();
}

async function copySecret() {
  if (await copyText(card.newSecret.textContent, { what: "the signing secret", select: card.newSecret })) {
    card.copySecret.textContent = "Copied";
  }
}

async function deleteWebhook(button, webhook) {
  const confirmed = await confirmAction({
    title: `Delete the webhook ${webhook.url}?`,
    text: "keyward will post nothing more to it.",
    confirm: "Delete webhook",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/webhooks/${segment(webhook.id)}`);
    card.deliveries.hidden = true;
    renderWebhooks((await api.get("org/webhooks")).webhooks);
    announce(`Webhook ${webhook.url} was deleted.`);
    card.url.focus();
  });
}

async function deliveriesOf(webhook) {
  return (await api.get(`org/webhooks/${segment(webhook.id)}/deliveries?limit=20`)).deliveries;
}

async function showDeliveries(webhook, { focus = true, deliveries = null } = {}) {
  const listed = deliveries ?? await deliveriesOf(webhook);
  card.deliveriesTitle.textContent = `Deliveries to ${webhook.url}`;
  const rows = listed.map((delivery) => row({},
    cell("When", when(delivery.last_attempt_at)),
    cell("Event", describeEvent(delivery)),
    cell("Outcome", describeOutcome(delivery)),
    cell("Attempts", String(delivery.attempts)),
    actionsCell(redeliverButton(webhook, delivery)),
  ));
  card.deliveryList.replaceChildren(...(rows.length ? rows : [emptyRow(5, "Nothing delivered yet.")]));
  card.deliveries.hidden = false;
  if (focus) card.deliveriesTitle.focus();
}

function describeEvent(delivery) {
  if (delivery.action === "webhook.ping") return "Test event";
  const name = describeAction(delivery.action);
  return delivery.redelivery ? `${name} (sent again)` : name;
}

// A delivery's state in words: what the endpoint answered and how fast, or why it failed.
export function describeOutcome(delivery) {
  const answer = delivery.status_code === null ? ""
    : `${delivery.status_code}${delivery.duration_ms === null ? "" : ` in ${delivery.duration_ms} ms`}`;
  // "NewConnectionError: the endpoint did not answer…": the exception's name says nothing to an admin.
  const why = (delivery.detail ?? "").replace(/^[A-Z][A-Za-z]+Error: /, "");
  switch (delivery.state) {
    case "delivered": return answer ? `Delivered — ${answer}` : "Delivered";
    case "failed": {
      const timing = delivery.duration_ms === null ? "" : ` in ${delivery.duration_ms} ms`;
      return `Failed — ${why || "no answer"}${timing}; keyward tries again`;
    }
    case "sending": return "Sending…";
    case "skipped": return `Not sent — ${why}`;
    case "rejected": return `Refused for good — ${why}`;
    default: return delivery.state;
  }
}

// A disabled endpoint is sent no event again (the API answers 409): no button offers it.
function redeliverButton(webhook, delivery) {
  if (webhook.state !== "enabled") return null;
  const label = `Redeliver ${describeEvent(delivery)} of ${new Date(delivery.last_attempt_at).toLocaleString()}`;
  return h("button", { type: "button", class: "quiet", "aria-label": label,
    onclick: (event) => run(event.currentTarget, () => redeliver(webhook, delivery)) }, "Redeliver");
}

async function sendTestEvent(webhook) {
  const { delivery_id: id } = await api.post(`org/webhooks/${segment(webhook.id)}/ping`, {});
  announce(`Sending a test event to ${webhook.url}…`);
  const delivery = await outcomeOf(webhook, id);
  announce(delivery
    ? `Test event to ${webhook.url}: ${describeOutcome(delivery)}.`
    : `The test event to ${webhook.url} is not sent yet; its delivery will be listed.`);
}

async function redeliver(webhook, earlier) {
  const path = `org/webhooks/${segment(webhook.id)}/deliveries/${segment(earlier.id)}/redeliver`;
  const { delivery_id: id } = await api.post(path, {});
  announce(`Sending ${describeAction(earlier.action)} to ${webhook.url} again…`);
  // The list is drawn again, without the button pressed: its title keeps the place.
  const delivery = await outcomeOf(webhook, id, { focus: true });
  renderWebhooks((await api.get("org/webhooks")).webhooks); // its run of failures may have changed
  announce(delivery
    ? `${describeAction(earlier.action)} sent again to ${webhook.url}: ${describeOutcome(delivery)}.`
    : `${describeAction(earlier.action)} is not sent again yet; its delivery will be listed.`);
}

// The new delivery once it has an outcome (or null when it took too long), shown in the list.
async function outcomeOf(webhook, id, { focus = false } = {}) {
  const deadline = Date.now() + OUTCOME_WAIT_MS;
  for (;;) {
    const deliveries = await deliveriesOf(webhook);
    const delivery = deliveries.find((listed) => listed.id === id);
    const settled = delivery && delivery.state !== "sending";
    if (settled || Date.now() > deadline) {
      await showDeliveries(webhook, { focus, deliveries });
      return settled ? delivery : null;
    }
    await new Promise((resolve) => { setTimeout(resolve, OUTCOME_POLL_MS); });
  }
}

function renderOutbox(mail) {
  card.outbox.hidden = mail === null;
  if (mail === null) return;
  const items = mail.map((message) => h("li", {},
    h("details", {},
      h("summary", {}, `${message.subject} — to ${message.to} — ${message.date}`),
      h("pre", {}, message.text))));
  card.outboxList.replaceChildren(...(items.length ? items : [h("li", {}, "No mail sent yet.")]));
}
