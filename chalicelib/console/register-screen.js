// The elements of the screen that registers a first security key when the organization enforces
// MFA, looked up in this one place.

import { $ } from "./ui.js";

const root = $("screen-register");

export const registerScreen = {
  root,
  title: $("register-title"),
  explanation: $("register-explanation"),
  form: $("register-form"),
  name: $("register-name"),
  codeField: $("register-code-field"),
  code: $("register-code"),
  signOut: root.querySelector("[data-action=sign-out]"),
};
