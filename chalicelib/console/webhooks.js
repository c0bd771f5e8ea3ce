// Organization settings → Webhooks, for admins: the endpoints the organization's audit events are
// posted to (signed), their recent deliveries, and, on the local stage, the outbox of notification
// mail that SES on moto accepted.

import { api, segment } from "./api.js";
import { describeAction } from "./messages.js";
import { describeState, enableButton } from "./webhook-state.js";
import {
  $, actionsCell, announce, cell, confirmAction, emptyRow, h, row, run, trashButton, when,
} from "./ui.js";

let built = false;

export async function showWebhooks() {
  if (!built) build();
  const [{ webhooks }, outbox] = await Promise.all([api.get("org/webhooks"), localOutbox()]);
  renderWebhooks(webhooks);
  renderOutbox(outbox);
}

// Signing out: no endpoint, delivery or secret of this organization stays for the next person.
export function forgetWebhooks() {
  if (!built) return;
  $("webhook-form").reset();
  $("webhook-new-secret").textContent = "";
  $("webhook-new").hidden = true;
  $("webhook-list").replaceChildren();
  $("webhook-deliveries").hidden = true;
  $("webhook-delivery-list").replaceChildren();
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
  built = true;
  const header = (...names) => h("thead", { role: "rowgroup" }, h("tr", { role: "row" },
    ...names.map((name) => h("th", { role: "columnheader", scope: "col" }, name))));
  const card = h("section", { class: "card", "aria-labelledby": "webhooks-title", id: "webhooks-card" },
    h("h2", { id: "webhooks-title" }, "Webhooks"),
    h("p", { class: "muted" }, "keyward posts the organization's audit events to these endpoints as they happen, ",
      "signed as Standard Webhooks specifies. Every event also goes to the deployment's EventBridge bus."),
    h("form", { id: "webhook-form" },
      h("label", { for: "webhook-url" }, "Endpoint URL"),
      h("input", { id: "webhook-url", type: "url", required: true, placeholder: "https://siem.example.com/keyward" }),
      h("label", { for: "webhook-events" }, "Events (audit actions, comma-separated; * for all)"),
      h("input", { id: "webhook-events", type: "text", required: true, value: "*" }),
      h("button", { type: "submit", id: "webhook-add" }, "Add webhook")),
    h("div", { id: "webhook-new", class: "secret-box", hidden: true, tabindex: "-1", "aria-labelledby": "webhook-new-title" },
      h("h3", { id: "webhook-new-title" }, "Signing secret of the new webhook"),
      h("p", {}, h("strong", {}, "Copy the secret now: it is shown only this once.")),
      h("code", { id: "webhook-new-secret" }),
      h("div", { class: "button-row" }, h("button", { type: "button", id: "webhook-secret-done", class: "quiet" }, "I have saved it"))),
    h("table", { role: "table", class: "responsive", "aria-labelledby": "webhooks-title" },
      header("URL", "Events", "State", "Created", h("span", { class: "visually-hidden" }, "Actions")),
      h("tbody", { role: "rowgroup", id: "webhook-list" })),
    h("div", { id: "webhook-deliveries", hidden: true },
      h("h3", { id: "webhook-deliveries-title", tabindex: "-1" }, "Deliveries"),
      h("table", { role: "table", class: "responsive", "aria-labelledby": "webhook-deliveries-title" },
        header("When", "Event", "State", "Attempts", "HTTP status", "Detail"),
        h("tbody", { role: "rowgroup", id: "webhook-delivery-list" }))));
  const outbox = h("section", { class: "card", "aria-labelledby": "outbox-title", id: "outbox-card", hidden: true },
    h("h2", { id: "outbox-title" }, "Local outbox ", h("span", { class: "badge" }, "local stage")),
    h("p", { class: "muted" }, "The notification mail keyward sent through SES on moto, newest first. ",
      "The same list: ", h("code", {}, "python -m devstack mail"), "."),
    h("button", { type: "button", id: "outbox-refresh" }, "Refresh outbox"),
    h("ul", { id: "outbox-list", class: "plain" }));
  const audit = $("audit-title").closest("section");
  audit.after(card, outbox);

  $("webhook-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run($("webhook-add"), addWebhook);
  });
  $("webhook-secret-done").addEventListener("click", forgetSecret);
  $("outbox-refresh").addEventListener("click", (event) => run(event.currentTarget, async () => {
    renderOutbox(await localOutbox());
    announce("Outbox refreshed.");
  }));
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
  $("webhook-list").replaceChildren(...(rows.length ? rows : [emptyRow(5, "No webhooks yet.")]));
}

async function addWebhook() {
  const events = $("webhook-events").value.split(",").map((name) => name.trim()).filter(Boolean);
  const created = await api.post("org/webhooks", { url: $("webhook-url").value.trim(), events });
  $("webhook-new-secret").textContent = created.secret;
  $("webhook-new").hidden = false;
  $("webhook-new").focus();
  $("webhook-url").value = "";
  renderWebhooks((await api.get("org/webhooks")).webhooks);
  announce(`Webhook ${created.webhook.url} added. Copy its signing secret now: it is shown only once.`);
}

function forgetSecret() {
  // Once dismissed, the secret is gone from the page for good.
  $("webhook-new-secret").textContent = "";
  $("webhook-new").hidden = true;
  $("webhook-url").focus();
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
    $("webhook-deliveries").hidden = true;
    renderWebhooks((await api.get("org/webhooks")).webhooks);
    announce(`Webhook ${webhook.url} was deleted.`);
    $("webhook-url").focus();
  });
}

async function showDeliveries(webhook) {
  const { deliveries } = await api.get(`org/webhooks/${segment(webhook.id)}/deliveries?limit=20`);
  $("webhook-deliveries-title").textContent = `Deliveries to ${webhook.url}`;
  const rows = deliveries.map((delivery) => row({},
    cell("When", when(delivery.last_attempt_at)),
    cell("Event", describeAction(delivery.action)),
    cell("State", delivery.state),
    cell("Attempts", String(delivery.attempts)),
    cell("HTTP status", delivery.status_code === null ? "—" : String(delivery.status_code)),
    cell("Detail", delivery.detail ?? ""),
  ));
  $("webhook-delivery-list").replaceChildren(...(rows.length ? rows : [emptyRow(6, "Nothing delivered yet.")]));
  $("webhook-deliveries").hidden = false;
  $("webhook-deliveries-title").focus();
}

function renderOutbox(mail) {
  $("outbox-card").hidden = mail === null;
  if (mail === null) return;
  const items = mail.map((message) => h("li", {},
    h("details", {},
      h("summary", {}, `${message.subject} — to ${message.to} — ${message.date}`),
      h("pre", {}, message.text))));
  $("outbox-list").replaceChildren(...(items.length ? items : [h("li", {}, "No mail sent yet.")]));
}
