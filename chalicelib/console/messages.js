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
  InvalidIdToken:
    "Your sign-in from the identity provider could not be verified. Start again from your organization's sign-in page.",
  IdentityProviderUnavailable: "Your organization's identity provider cannot be reached right now. Try again in a minute.",
  MfaRequired: "Finish the security key check first.",
  RegistrationRequired: "Your organization enforces MFA: register a security key first.",
  AdminRequired: "Only the organization's admins can do this.",
  NotForBackupSessions:
    "You signed in with backup credentials. They cannot hold security keys or create more backup credentials: sign in through your identity provider for that.",

  // Backup credentials.
  InvalidBackupCredentials: "That key ID and secret do not match any backup credentials.",
  TooManyAttempts: "Too many failed attempts with these backup credentials. Wait a few minutes, then try again.",
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
  ConcurrentChange: "Someone changed the same thing at the same moment. Reload and try again.",
  SessionNotFound: "That session has already ended.",

  // Anything else.
  MalformedJson: "The console sent a request keyward did not understand. Reload the page and try again.",
  MalformedRequest: null, // the API's message names the field
  BodyTooLarge: "That is more data than keyward accepts in one request.",
  InvalidCursor: "The list changed meanwhile. Reload the page.",
  StorageUnavailable: "keyward's storage is busy. Nothing was changed; try again in a moment.",
  NetworkError: "keyward could not be reached. Check your connection and try again.",
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

// A sentence for any error the console meets.
export function describe(error) {
  if (error?.name === "ApiError") {
    const sentence = BY_CODE[error.code];
    return sentence ?? error.message ?? "Something went wrong. Please try again.";
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
  "mfa.disabled": "Disabled MFA",
  "enforcement.enabled": "Enforced MFA",
  "enforcement.disabled": "Stopped enforcing MFA",
  "enforcement.sessions_ended": "Sessions ended by enforcement",
  "backup_credentials.created": "Backup credentials created",
  "backup_credentials.deleted": "Backup credentials deleted",
  "backup_login.succeeded": "Signed in with backup credentials",
  "backup_login.failed": "Failed sign-in with backup credentials",
  "session.ended": "Session ended",
  "member.sessions_ended": "Member's sessions ended",
};

export function describeAction(action) {
  return ACTIONS[action] ?? action;
}
