// Whether a webhook endpoint is sent events, in Organization settings → Webhooks: the State cell,
// and the Enable action for an endpoint that is disabled (keyward disables one that keeps
// failing), and an enabled endpoint's run of failed deliveries. Enabling keeps its secret and
// deliveries and gives it a fresh run of attempts.

import { api, segment } from "./api.js";
import { WORDS, counted } from "./plural.js";
import { announce, h, run, when } from "./ui.js";

export function describeState(webhook) {
  if (webhook.state === "enabled") {
    const failures = webhook.consecutive_failures;
    if (!failures) return "Enabled";
    // Still sent events, but keyward disables it once the run reaches its limit: an admin should know now.
    return [h("strong", {}, "Enabled — failing: "),
      failures === 1 ? "1 delivery failed" : `${failures} deliveries in a row failed`,
      webhook.failing_since ? [" since ", when(webhook.failing_since)] : ""];
  }
  const failures = webhook.consecutive_failures;
  return ["Disabled ", when(webhook.disabled_at, { never: "" }),
    failures > 0 ? ` after ${counted(failures, WORDS.failedDelivery)} in a row` : ""];
}

// Null for an enabled endpoint: there is nothing to enable.
export function enableButton(webhook, { reload }) {
  if (webhook.state !== "disabled") return null;
  return h("button", {
    type: "button", class: "quiet", "aria-label": `Enable webhook ${webhook.url}`,
    onclick: (event) => {
      const list = event.currentTarget.closest("tbody"); // stays while its rows are rendered again
      run(event.currentTarget, async () => {
        await api.patch(`org/webhooks/${segment(webhook.id)}`, { enabled: true });
        await reload();
        announce(`Webhook ${webhook.url} was enabled again: it receives the events from now on.`);
        // The button is gone with its state; the row's next control keeps the place.
        list.querySelector(`[aria-label="${CSS.escape(`Deliveries to ${webhook.url}`)}"]`)?.focus();
      });
    },
  }, "Enable");
}
