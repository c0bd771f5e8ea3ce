// What the console tells a person when something is refused: the API's reason codes and the
// browser's WebAuthn errors, in sentences. Anything unknown falls back to the API's own Message.

const BY_CODE = {
  // Sessions and sign-in.
  MissingToken: "You are not signed in. Sign in to continue.",
  // A session that enforcement ended is soon deleted; its token then reads as merely unknown.
  InvalidToken:
    "Your session has ended — for example because your organization started enforcing multi-factor authentication, or you signed out elsewhere. Sign in again.",
  SessionExpired: "Your session expired. Sign in again.",
  SessionEndedByEnforcement:
    "Your organization now enforces multi-factor authentication, so your session was ended. Sign in again.",
  SessionEndedByNewKey:
    "A security key was registered to your account after this session started, so the session was ended. Sign in again with your key.",
  SessionIdle: "Your session was unused for a long time and has ended. Sign in again.",
  ReauthenticationRequired: null, // the API's (or the step-up's) message says what to do
  AlreadyEnrolled: "You already have a security key. Sign out, then sign in again and use your key.",
  InvalidIdToken:
    "Your sign-in from the identity provider could not be verified. Start again from your organization's sign-in page.",
  IdentityProviderUnavailable: "Your organization's identity provider cannot be reached right now. Try again in a minute.",
  OrganizationRateLimited: "Many people of your organization are signing in at this moment. Try again in a second.",
  MfaRequired: "Finish the security key check first.",
  RegistrationRequired: "Your organization enforces MFA: register a security key first.",
  AdminRequired: "Only the organization's admins can do this.",
  NotForBackupSessions:
    "You signed in with backup credentials. They cannot hold security keys or create more backup credentials: sign in through your identity provider for that.",

  // Backup credentials.
  InvalidBackupCredentials: "That key ID and secret do not match any backup credentials.",
  BackupCredentialsNotFound: "Those backup credentials no longer exist.",

  // Security key ceremonies.
  ChallengeNotFound: "That security key check was already used or is unknown. Please try again.",
  ChallengeExpired: "The security key check took too long and expired. Please try again.",
  ChallengeMismatch: "The security key answered a different request. Please try again.",
  OriginMismatch: "The security key was used from a web address keyward does not expect. Open the console from its usual address.",
  CrossOriginRefused: "The security key was used from inside another website. Open the console directly.",
  RpIdMismatch: "The security key answered for a different website. Open the console from its usual address.",
  UserNotPresent: "The security key did not confirm that you touched it. Try again and touch the key.",
  InvalidBackupFlags: "The security key gave inconsistent information about itself. Try another key.",
  BackupEligibilityChanged:
    "This security key no longer describes itself as it did when it was registered. It was refused; ask an admin to check it.",
  UnsupportedAlgorithm: "This security key uses a signature algorithm keyward does not accept. Try another key.",
  UnknownCredential: "That security key is not one of yours. Use a key you registered with keyward.",
  SignCountRegression:
    "This security key's counter went backwards, which can mean the key was copied. It was refused; ask an admin to check it.",
  CeremonyFailed: "The security key's answer could not be verified. Please try again.",
  MalformedCredential: "The browser's answer from the security key could not be read. Please try again.",
  CredentialIdTooLong: "This security key's ID is too long for keyward. Try another key.",

  // Security keys.
  InvalidKeyName: "Give the key a name of 1 to 64 printable characters.",
  KeyNotFound: "That security key no longer exists; it may have been deleted elsewhere.",
  MemberNotFound: "That member no longer exists.",
  KeyAlreadyRegistered: "This security key is already registered, to your account or to someone else's.",
  TooManyKeys: "You have as many security keys as keyward allows. Delete one before adding another.",
  LastKeyRequired: "Your organization enforces MFA, so you must keep at least one security key.",
  SecurityKeyRequired:
    "Add a security key of your own (Personal settings) before enforcing MFA, so that you cannot lock yourself out.",
  BackupCredentialsMissing:
    "The organization has no backup credentials: create them first, or tick “Enforce without backup credentials” "
    + "to enforce knowing that nobody can get back in if the identity provider or the security keys are lost.",
  MfaNotEnforced: "MFA is no longer enforced (another admin turned it off), so there is no grace period to change.",
  ConcurrentChange: "Someone changed the same thing at the same moment, so this was not done. Try again.",

  // The organization's authenticator policy. Attestation is only ever checked at registration.
  UserVerificationRequired:
    "Your organization requires security keys that check a PIN or fingerprint, and this key did not. Set up a PIN on the key, or use another key.",
  AttestationRequired:
    "Your organization accepts only security keys that prove their model, and this key did not. It was not registered: use another key, or ask an admin which models are accepted.",
  AttestationUntrusted:
    "Your organization accepts only security key models verified by the FIDO Metadata Service, and this key's model could not be verified. It was not registered: use another key, or ask an admin which models are accepted.",
  AuthenticatorNotAllowed: null, // the API's message names the key's model, or that another key of yours is needed
  SyncedCredentialNotAllowed:
    "Your organization accepts only security keys bound to one device, not passkeys synced between devices. Use a hardware security key.",
  SessionNotFound: "That session has already ended.",

  // Enrolment passes.
  EnrollmentPassRequired:
    "Your organization requires an enrolment pass for your first security key: enter the code an admin gave you.",
  InvalidEnrollmentPass:
    "That enrolment code is not valid: it may be mistyped, used, revoked or expired, or issued to someone else. Ask an admin for a new one.",
  EnrollmentPassNotFound: "That enrolment pass no longer exists.",
  EnrollmentPassUsed: "That enrolment pass was already used; delete the security key it let in instead.",

  // Relying parties.
  InvalidRedirectUri: null, // the API's message names the URI and what is wrong with it
  InvalidClientRegistration: null, // the API's message names the field
  UnknownClient: "That relying party no longer exists; it may have been deleted elsewhere.",
  PublicClientHasNoSecret: "A public relying party has no secret: it proves itself with PKCE alone.",

  // Anything else.
  MalformedJson: "The console sent a request keyward did not understand. Reload the page and try again.",
  MalformedRequest: null, // the API's message names the field
  BodyTooLarge: "That is more data than keyward accepts in one request.",
  InvalidCursor: "The list changed meanwhile. Reload the page.",
  StorageUnavailable: "keyward's storage is busy. Nothing was changed; try again in a moment.",
  NetworkError: null, // said with whether a change was lost (unreachable below)
  NoSuchEndpoint: "This keyward deployment does not offer that.",
};

// DOMException names from navigator.credentials.create() / get().
const BY_WEBAUTHN_ERROR = {
  NotAllowedError:
    "The security key prompt was cancelled or timed out. Nothing was changed — try again when your key is ready.",
  AbortError: "The security key prompt was cancelled. Nothing was changed.",
  InvalidStateError: "This security key is already registered to your account. Use a different key.",
  SecurityError: "Security keys cannot be used on this web address. Open the console from its usual (https) address.",
  NotSupportedError: "This browser or security key does not support what keyward needs. Try another key or browser.",
  ConstraintError: "This security key cannot do what keyward asks of it. Try another key.",
  UnsupportedBrowser:
    "This browser cannot use security keys with keyward. Use a current version of Chrome, Edge, Firefox or Safari.",
};

// Failed backup sign-ins are counted per key ID over a window of this length (docs/api.md).
const BACKUP_LOGIN_WINDOW_MINUTES = 15;
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });

// Sentences that depend on when they are said, or on what the request was.
const BY_CODE_THEN = {
  TooManyAttempts: () => {
    const until = new Date(Date.now() + BACKUP_LOGIN_WINDOW_MINUTES * 60_000);
    return "Too many failed attempts: keyward refuses them for now, even with the right secret or code. "
      + `Try again after ${timeFormat.format(until)} (${BACKUP_LOGIN_WINDOW_MINUTES} minutes at most).`;
  },
};

// An answer keyward did not explain (a crash, a gateway timeout): what happened, and whether the
// change may have been made, which only a read can tell.
function unexplained(error) {
  if (error.unreachable) return unreachable(error);
  const what = `keyward could not finish that (error ${error.status}).`;
  if (error.method === "GET") return `${what} Nothing was changed. Try again in a moment.`;
  return `${what} The change may or may not have been saved: reload the page to see, then try again if needed.`;
}

// keyward could not be reached (connection.js keeps trying): a change is not sent again, and the page
// shows what is stored once keyward answers.
function unreachable(error) {
  const what = error.status ? `keyward could not be reached (error ${error.status})` : "keyward could not be reached";
  if (error.method === "GET") return `${what}. Check your connection; the page tries again.`;
  const outcome = error.status === 502 || error.status === 504 ? "may not have been saved" : "was not saved";
  return `${what}, so the change ${outcome}. The page shows what keyward stores once it answers again.`;
}

// An error the console has already put in words.
export function explained(sentence) {
  const error = new Error(sentence);
  error.name = "Explained";
  return error;
}

// A sentence for any error the console meets.
export function describe(error) {
  if (error?.name === "Explained") return error.message;
  if (error?.name === "ApiError") {
    if (BY_CODE_THEN[error.code]) return BY_CODE_THEN[error.code]();
    const sentence = BY_CODE[error.code];
    if (sentence) return sentence;
    if ((error.status >= 500 || error.status === 0) && !sentence) return unexplained(error);
    return error.message || "Something went wrong. Please try again.";
  }
  if (error?.name && BY_WEBAUTHN_ERROR[error.name]) return BY_WEBAUTHN_ERROR[error.name];
  return `Something went wrong: ${error?.message ?? error}. Please try again.`;
}

// How the audit log names what happened.
const ACTIONS = {
  login: "Signed in",
  "key.registered": "Security key registered",
  "key.renamed": "Security key renamed",
  "key.deleted": "Security key deleted",
  "key.sign_count_regression": "Security key counter went backwards (refused)",
  "key.model_compromised": "Security key model reported compromised",
  "policy.changed": "Authenticator policy changed",
  "mfa.succeeded": "Passed the security key check",
  "mfa.failed": "Failed the security key check",
  "reauth.succeeded": "Confirmed with a security key",
  "reauth.failed": "Failed to confirm with a security key",
  "key.registration_failed": "Security key registration refused",
  logout: "Signed out",
  "mfa.disabled": "Disabled MFA",
  "enforcement.enabled": "Enforced MFA",
  "enforcement.disabled": "Stopped enforcing MFA",
  "enforcement.sessions_ended": "Sessions ended by enforcement",
  "backup_credentials.created": "Backup credentials created",
  "backup_credentials.deleted": "Backup credentials deleted",
  "backup_login.succeeded": "Signed in with backup credentials",
  "backup_login.failed": "Failed sign-in with backup credentials",
  "session.ended": "Session ended",
  "enrollment.changed": "Changed who may register a first security key",
  "enrollment_pass.issued": "Enrolment pass issued",
  "enrollment_pass.revoked": "Enrolment pass revoked",
  "enrollment_pass.used": "Enrolment pass used",
  "enrollment_pass.refused": "Enrolment code refused",
  "member.sessions_ended": "Member's sessions ended",
  "oidc_client.created": "Relying party added",
  "oidc_client.changed": "Relying party changed",
  "oidc_client.deleted": "Relying party deleted",
  "oidc_client.secret_rotated": "Relying party's client secret replaced",
};

export function describeAction(action) {
  return ACTIONS[action] ?? action;
}

export const AUDIT_ACTIONS = Object.keys(ACTIONS);

// Why a security key check failed, as the audit log shows it (the refusal's reason code).
const FAILURES = {
  ChallengeNotFound: "the check was already used or unknown",
  ChallengeExpired: "the check took too long",
  ChallengeMismatch: "the key answered another request",
  OriginMismatch: "used from an unexpected web address",
  CrossOriginRefused: "used from inside another website",
  RpIdMismatch: "the key answered for another website",
  UserNotPresent: "the key was not touched",
  InvalidBackupFlags: "the key described itself inconsistently",
  UnsupportedAlgorithm: "the key's signature algorithm is not accepted",
  UnknownCredential: "the key is not registered to them",
  SignCountRegression: "the key's counter went backwards (possibly copied)",
  CeremonyFailed: "the key's signature did not verify",
  MalformedCredential: "the browser's answer could not be read",
};

export function describeFailure(reason) {
  return FAILURES[reason] ?? reason;
}
