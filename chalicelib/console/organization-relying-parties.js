// Organization settings → Relying parties, for admins: the apps and IdPs registered to ask keyward
// for a member's key check. A client secret is shown once, at creation or rotation, and leaves the
// page for good when dismissed, when the page is left, or on sign-out. Changes need a recent key
// check: api.js steps up when keyward asks for one (stepup.js), as for every organization action.

import { api, segment } from "./api.js";
import { organizationPage } from "./organization-screen.js";
import { relyingPartiesScreen } from "./relying-parties-screen.js";
import {
  actionsCell, announce, cell, confirmAction, copyText, emptyRow, h, row, run, shortId, trashButton,
} from "./ui.js";

let card = null;
let editing = null; // the relying party whose redirect URIs are being edited

const FLOW_NAMES = { code: "Code + PKCE", id_token: "ID token (form_post)" };

export async function showRelyingParties() {
  if (!card) {
    card = relyingPartiesScreen();
    wire();
  }
  render((await api.get("org/oidc-clients")).clients);
}

// Signing out: no client, and above all no secret, of this organization stays for the next person.
export function forgetRelyingParties() {
  if (!card) return;
  forgetSecret({ focus: false });
  closeEdit({ focus: false });
  card.form.reset();
  card.list.replaceChildren();
}

function wire() {
  card.form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(card.add, add, { fields: { InvalidRedirectUri: card.redirectUris, InvalidClientRegistration: card.name } });
  });
  card.type.addEventListener("change", () => {
    // A public client may use only the code flow.
    const isPublic = card.type.value === "public";
    card.flowIdToken.disabled = isPublic;
    if (isPublic) {
      card.flowIdToken.checked = false;
      card.flowCode.checked = true;
    }
  });
  card.copyClientId.addEventListener("click", () => copyText(card.secretClientId.textContent, {
    what: "the client ID", select: card.secretClientId,
  }));
  card.copySecret.addEventListener("click", () => copyText(card.secret.textContent, {
    what: "the client secret", select: card.secret,
  }));
  card.secretDone.addEventListener("click", () => forgetSecret());
  card.edit.addEventListener("submit", (event) => {
    event.preventDefault();
    run(card.editSave, saveRedirectUris, { fields: { InvalidRedirectUri: card.editUris } });
  });
  card.editCancel.addEventListener("click", () => closeEdit());
  organizationPage.whenLeft(() => forgetSecret({ focus: false }));
}

function uris(textarea) {
  return textarea.value.split("\n").map((line) => line.trim()).filter(Boolean);
}

function render(clients) {
  const rows = clients.map((client) => row({},
    cell("Name", client.name),
    cell("Client ID", shortId(client.client_id, { what: "client ID" })),
    cell("Redirect URIs", h("ul", { class: "plain" }, ...client.redirect_uris.map((uri) => h("li", {}, h("code", {}, uri))))),
    cell("Flows", client.flows.map((flow) => FLOW_NAMES[flow] ?? flow).join(", ")),
    cell("Type", client.type === "public" ? "Public" : "Confidential"),
    actionsCell(
      h("button", { type: "button", class: "quiet", "aria-label": `Edit redirect URIs of ${client.name}`,
        onclick: () => openEdit(client) }, "Edit redirect URIs"),
      client.type === "confidential"
        ? h("button", { type: "button", class: "quiet", "aria-label": `New secret for ${client.name}`,
          onclick: (event) => rotate(event.currentTarget, client) }, "New secret")
        : null,
      trashButton({ label: `Delete relying party ${client.name}`, onclick: (event) => remove(event.currentTarget, client) }),
    ),
  ));
  card.list.replaceChildren(...(rows.length ? rows : [emptyRow(6, "No relying parties yet.")]));
}

async function reload() {
  render((await api.get("org/oidc-clients")).clients);
}

async function add() {
  const flows = [];
  if (card.flowCode.checked) flows.push("code");
  if (card.flowIdToken.checked) flows.push("id_token");
  const created = await api.post("org/oidc-clients", {
    name: card.name.value.trim(),
    redirect_uris: uris(card.redirectUris),
    flows,
    type: card.type.value,
    signing_alg: card.signingAlg.value,
  });
  card.form.reset();
  card.flowIdToken.disabled = false;
  await reload();
  if (created.client_secret) {
    showSecret(created, `Relying party ${created.client.name} added. Copy its client secret now: you will not see it again.`);
  } else {
    announce(`Relying party ${created.client.name} added. It is public: it has no secret. Its client ID is ${created.client.client_id}.`);
    card.name.focus();
  }
}

function showSecret({ client, client_secret: secret }, message) {
  card.secretTitle.textContent = `Client secret of ${client.name}`;
  card.secretClientId.textContent = client.client_id;
  card.secret.textContent = secret;
  card.secretBox.hidden = false;
  announce(message, { near: card.secretTitle });
  card.secretBox.focus();
}

function forgetSecret({ focus = true } = {}) {
  // Once dismissed, the secret is gone from the page for good.
  const shown = !card.secretBox.hidden;
  card.secret.textContent = "";
  card.secretClientId.textContent = "";
  card.secretBox.hidden = true;
  if (shown && focus) card.name.focus();
}


function openEdit(client) {
  editing = client;
  card.editTitle.textContent = `Redirect URIs of ${client.name}`;
  card.editUris.value = client.redirect_uris.join("\n");
  card.edit.hidden = false;
  card.editUris.focus();
}

function closeEdit({ focus = true } = {}) {
  const client = editing;
  editing = null;
  card.edit.hidden = true;
  card.editUris.value = "";
  if (focus && client) {
    const button = [...card.list.querySelectorAll("button")]
      .find((candidate) => candidate.getAttribute("aria-label") === `Edit redirect URIs of ${client.name}`);
    button?.focus();
  }
}

async function saveRedirectUris() {
  const client = editing;
  await api.patch(`org/oidc-clients/${segment(client.client_id)}`, { redirect_uris: uris(card.editUris) });
  await reload();
  closeEdit();
  announce(`Redirect URIs of ${client.name} saved.`);
}

async function rotate(button, client) {
  const confirmed = await confirmAction({
    title: `Replace the client secret of ${client.name}?`,
    text: "The current secret stops working at once: the app or IdP cannot sign in members until you give it the new one.",
    confirm: "Replace secret",
  });
  if (!confirmed) return;
  await run(button, async () => {
    const rotated = await api.post(`org/oidc-clients/${segment(client.client_id)}/secret`);
    showSecret(rotated, `New client secret for ${client.name}. Copy it now: you will not see it again.`);
  });
}

async function remove(button, client) {
  const confirmed = await confirmAction({
    title: `Delete the relying party ${client.name}?`,
    text: "It can no longer ask keyward for a key check: members cannot sign in to it with keyward until it is added again, with a new client ID.",
    confirm: "Delete relying party",
  });
  if (!confirmed) return;
  await run(button, async () => {
    await api.delete(`org/oidc-clients/${segment(client.client_id)}`);
    if (editing?.client_id === client.client_id) closeEdit({ focus: false });
    await reload();
    announce(`Relying party ${client.name} was deleted.`);
    card.name.focus();
  });
}
