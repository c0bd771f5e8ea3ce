// The security-key screen's elements (the MFA step of signing in), looked up in this one place.

import { $ } from "./ui.js";

const root = $("screen-mfa");

export const mfaScreen = {
  root,
  start: $("mfa-start"),
  lostKey: $("lost-key"),
  signOut: root.querySelector("[data-action=sign-out]"),
};
