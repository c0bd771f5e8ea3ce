// Organization settings → Relying parties: the card's elements, built on first show and kept
// here, the one place they are looked up (organization-relying-parties.js gives them behaviour).
// The card stands before the audit log, so that the log stays the page's last settings card.

import { screen } from "./organization-screen.js";
import { h, scrolling } from "./ui.js";

let elements = null;

const header = (...names) => h("thead", { role: "rowgroup" }, h("tr", { role: "row" },
  ...names.map((name) => h("th", { role: "columnheader", scope: "col" }, name))));

const REDIRECT_HINT = "One per line: https URLs (plain http only for localhost or 127.0.0.1), matched exactly; at most 10.";

export function relyingPartiesScreen() {
  elements ??= build();
  return elements;
}

function build() {
  const built = {
    name: h("input", { id: "rp-name", type: "text", required: true, maxlength: 100, autocomplete: "off" }),
    redirectUris: h("textarea", {
      id: "rp-redirect-uris", rows: 3, required: true, placeholder: "https://app.example.com/callback",
      "aria-describedby": "rp-redirect-hint", "data-described-by": "rp-redirect-hint",
    }),
    type: h("select", { id: "rp-type" },
      h("option", { value: "confidential" }, "Confidential: a server-side app or an IdP, with a client secret"),
      h("option", { value: "public" }, "Public: a single-page or native app, PKCE only")),
    flowCode: h("input", { id: "rp-flow-code", type: "checkbox", checked: true }),
    flowIdToken: h("input", { id: "rp-flow-id-token", type: "checkbox" }),
    signingAlg: h("select", { id: "rp-signing-alg" },
      h("option", { value: "RS256" }, "RS256 (Entra ID requires it)"),
      h("option", { value: "ES256" }, "ES256")),
    add: h("button", { type: "submit", id: "rp-add" }, "Add relying party"),
    secretTitle: h("h3", { id: "rp-secret-title" }, "Client secret"),
    secretClientId: h("code", { id: "rp-secret-client-id" }),
    secret: h("code", { id: "rp-secret" }),
    copyClientId: h("button", { type: "button", id: "rp-copy-client-id" }, "Copy client ID"),
    copySecret: h("button", { type: "button", id: "rp-copy-secret" }, "Copy secret"),
    secretDone: h("button", { type: "button", id: "rp-secret-done", class: "quiet" }, "I have saved it"),
    list: h("tbody", { role: "rowgroup", id: "rp-list" }),
    editTitle: h("h3", { id: "rp-edit-title", tabindex: "-1" }, "Redirect URIs"),
    editUris: h("textarea", {
      id: "rp-edit-uris", rows: 4, required: true,
      "aria-describedby": "rp-edit-hint", "data-described-by": "rp-edit-hint",
    }),
    editSave: h("button", { type: "submit", id: "rp-edit-save" }, "Save redirect URIs"),
    editCancel: h("button", { type: "button", id: "rp-edit-cancel", class: "quiet" }, "Cancel"),
  };
  built.form = h("form", { id: "rp-form", "aria-labelledby": "rp-form-title" },
    h("h3", { id: "rp-form-title" }, "Add a relying party"),
    h("label", { for: "rp-name" }, "Name"),
    built.name,
    h("label", { for: "rp-redirect-uris" }, "Redirect URIs"),
    built.redirectUris,
    h("p", { id: "rp-redirect-hint", class: "muted" }, REDIRECT_HINT),
    h("label", { for: "rp-type" }, "Type"),
    built.type,
    h("fieldset", {},
      h("legend", {}, "Flows"),
      h("div", { class: "switch-row" }, built.flowCode,
        h("label", { for: "rp-flow-code" }, "Authorization code with PKCE (apps, Okta, Keycloak)")),
      h("div", { class: "switch-row" }, built.flowIdToken,
        h("label", { for: "rp-flow-id-token" }, "ID token posted back (Entra ID external authentication method)"))),
    h("label", { for: "rp-signing-alg" }, "ID token signing algorithm"),
    built.signingAlg,
    built.add);
  built.secretBox = h("div", { id: "rp-secret-box", class: "secret-box", role: "group", hidden: true, tabindex: "-1", "aria-labelledby": "rp-secret-title" },
    built.secretTitle,
    h("p", {}, h("strong", {}, "Copy the client secret now: you will not see it again."),
      " keyward keeps only a hash of it; if it is lost, create a new one."),
    h("p", {}, "Client ID: ", built.secretClientId),
    h("p", {}, "Client secret: ", built.secret),
    h("div", { class: "button-row" }, built.copyClientId, built.copySecret, built.secretDone));
  built.edit = h("form", { id: "rp-edit", hidden: true, "aria-labelledby": "rp-edit-title" },
    built.editTitle,
    h("label", { for: "rp-edit-uris" }, "Redirect URIs"),
    built.editUris,
    h("p", { id: "rp-edit-hint", class: "muted" }, REDIRECT_HINT),
    h("div", { class: "button-row" }, built.editSave, built.editCancel));
  built.section = h("section", { class: "card", "aria-labelledby": "rp-title", id: "relying-parties-card" },
    h("h2", { id: "rp-title" }, "Relying parties"),
    h("p", { class: "muted" }, "Apps and identity providers that ask keyward, as their OpenID provider, ",
      "whether a member of this organization just proved a security key. Adding, changing and deleting ",
      "one asks for your security key if you have not used it recently."),
    scrolling(h("table", { role: "table", class: "responsive", "aria-labelledby": "rp-title" },
      header("Name", "Client ID", "Redirect URIs", "Flows", "Type", h("span", { class: "visually-hidden" }, "Actions")),
      built.list), "Relying parties: table"),
    built.edit,
    built.form,
    built.secretBox);
  screen.cards.audit.before(built.section);
  return built;
}
