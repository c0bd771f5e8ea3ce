// Organization settings → Webhooks, for admins: the endpoints the organization's audit events are
// posted to (signed), their recent deliveries, and, on the local stage, the outbox of notification
// mail that SES on moto accepted.

import { api, segment } from "./api.js";
import { describeAction } from "./messages.js";
import { describeState, enableButton } from "./webhook-state.js";
import { screen } from "./organization-screen.js";
import {
  actionsCell, announce, cell, confirmAction, emptyRow, h, row, run, trashButton, when,
} from "./ui.js";

let card = null; // built on first show, then kept: its elements by name

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
    events: h("input", { id: "webhook-events", type: "text", required: true, value: "*" }),
    add: h("button", { type: "submit", id: "webhook-add" }, "Add webhook"),
    newSecret: h("code", { id: "webhook-new-secret" }),
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
    h("label", { for: "webhook-events" }, "Events (audit actions, comma-separated; * for all)"),
    built.events,
    built.add);
  built.newWebhook = h("div", { id: "webhook-new", class: "secret-box", hidden: true, tabindex: "-1", "aria-labelledby": "webhook-new-title" },
    h("h3", { id: "webhook-new-title" }, "Signing secret of the new webhook"),
    h("p", {}, h("strong", {}, "Copy the secret now: it is shown only this once.")),
    built.newSecret,
    h("div", { class: "button-row" }, built.secretDone));
  built.deliveries = h("div", { id: "webhook-deliveries", hidden: true },
    built.deliveriesTitle,
    h("table", { role: "table", class: "responsive", "aria-labelledby": "webhook-deliveries-title" },
      header("When", "Event", "State", "Attempts", "HTTP status", "Detail"),
      built.deliveryList));
  built.section = h("section", { class: "card", "aria-labelledby": "webhooks-title", id: "webhooks-card" },
    h("h2", { id: "webhooks-title" }, "Webhooks"),
    h("p", { class: "muted" }, "keyward posts the organization's audit events to these endpoints as they happen, ",
      "signed as Standard Webhooks specifies. Every event also goes to the deployment's EventBridge bus."),
    built.form,
    built.newWebhook,
    h("table", { role: "table", class: "responsive", "aria-labelledby": "webhooks-title" },
      header("URL", "Events", "State", "Created", h("span", { class: "visually-hidden" }, "Actions")),
      built.list),
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
  built.outboxRefresh.addEventListener("click", (event) => run(event.currentTarget, async () => {
    renderOutbox(await localOutbox());
    announce("Outbox refreshed.");
  }));
  return built;
}

function renderWebhooks(webhooks) {
  const rows = webhooks.map((webhook) => row({},
    cell("URL", h("code", {}, webhook.url)),
    cell("Events", webhook.events.join(", ")),
    cell("State", describeState(webhook)),
    cell("Created", when(webhook.created_at)),
    actionsCell(
      enableButton(webhook, { reload: async () => renderWebhooks((await api.get("org/webhooks")).webhooks) }),
      h("button", { type: "button", class: "quiet", "aria-label": `Deliveries to ${webhook.url}`,
        onclick: (event) => run(event.currentTarget, () => showDeliveries(webhook)) }, "Deliveries"),
      trashButton({ label: `Delete webhook ${webhook.url}`, onclick: (event) => deleteWebhook(event.currentTarget, webhook) }),
    ),
  ));
  card.list.replaceChildren(...(rows.length ? rows : [emptyRow(5, "No webhooks yet.")]));
}

async function addWebhook() {
  const events = card.events.value.split(",").map((name) => name.trim()).filter(Boolean);
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
  card.url.focus();
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

async function showDeliveries(webhook) {
  const { deliveries } = await api.get(`org/webhooks/${segment(webhook.id)}/deliveries?limit=20`);
  card.deliveriesTitle.textContent = `Deliveries to ${webhook.url}`;
  const rows = deliveries.map((delivery) => row({},
    cell("When", when(delivery.last_attempt_at)),
    cell("Event", describeAction(delivery.action)),
    cell("State", delivery.state),
    cell("Attempts", String(delivery.attempts)),
    cell("HTTP status", delivery.status_code === null ? "—" : String(delivery.status_code)),
    cell("Detail", delivery.detail ?? ""),
  ));
  card.deliveryList.replaceChildren(...(rows.length ? rows : [emptyRow(6, "Nothing delivered yet.")]));
  card.deliveries.hidden = false;
  card.deliveriesTitle.focus();
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
