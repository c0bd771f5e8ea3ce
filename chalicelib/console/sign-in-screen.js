// The sign-in screen's elements, looked up in this one place (app.js signs in with them).

import { $ } from "./ui.js";

const root = $("screen-sign-in");

export const signInScreen = {
  root,
  reason: $("sign-in-reason"),
  // Reset when a session ends: nothing the last person typed stays for the next one.
  forms: [...root.querySelectorAll("form")],
  demo: {
    card: $("dev-sign-in"),
    users: [...root.querySelectorAll("[data-demo-user]")],
    form: $("dev-sign-in-form"),
    org: $("dev-org"),
    user: $("dev-user"),
    admin: $("dev-admin"),
  },
  idp: { start: $("idp-start"), button: $("idp-start-button") },
  idToken: { form: $("id-token-form"), input: $("id-token") },
  backup: { form: $("backup-sign-in-form"), keyId: $("backup-key-id"), secret: $("backup-secret") },
};
