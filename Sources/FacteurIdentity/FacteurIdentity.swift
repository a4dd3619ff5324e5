// TEMPORARY on main until the identity branch lands (it replaces this file).
import FacteurStore
public enum Credentials {
    public static func make(password: String) throws -> StoredCredentials {
        StoredCredentials(passwordHash: "temporary", scramSHA256: nil)
    }
}
