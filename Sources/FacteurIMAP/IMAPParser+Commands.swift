// The command rules of RFC 9051 §9 (`command-any`, `command-auth`, `command-nonauth`,
// `command-select`) and of the extensions Facteur speaks.

import Foundation

extension Cursor {
    /// command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF
    mutating func commandKind() throws -> IMAPCommand.Kind {
        let name = try word()
        switch name {
        case "CAPABILITY": return .capability
        case "NOOP": return .noop
        case "LOGOUT": return .logout
        case "STARTTLS": return .startTLS
        case "CHECK": return .check
        case "CLOSE": return .close
        case "UNSELECT": return .unselect
        case "EXPUNGE": return .expunge
        case "IDLE": return .idle
        case "NAMESPACE": return .namespace

        // authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]; initial-resp = (base64 / "=")
        case "AUTHENTICATE":
            try space()
            let mechanism = try atom().uppercased()
            var initial: [UInt8]?
            if peek(is: 0x20) {
                index += 1
                let slice = try run { b in
                    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || IMAPGrammar.isDigit(b)
                        || b == UInt8(ascii: "+") || b == UInt8(ascii: "/") || b == UInt8(ascii: "=")
                }
                guard !slice.isEmpty else { throw ParseFailure.bad("invalid initial response") }
                initial = Array(slice)
            }
            return .authenticate(mechanism: mechanism, initialResponse: initial)

        // login = "LOGIN" SP userid SP password
        case "LOGIN":
            try space()
            let user = try astring()
            try space()
            let password = try astring()
            return .login(user: user, password: password)

        // enable = "ENABLE" 1*(SP capability)
        // compress = "COMPRESS" SP algorithm (RFC 4978 §4)
        case "COMPRESS":
            try space()
            return .compress(try atom().uppercased())
        case "ENABLE":
            var names: [String] = []
            repeat {
                try space()
                names.append(try atom().uppercased())
                guard names.count <= limits.maxListItems else { throw ParseFailure.bad("too many capabilities") }
            } while peek(is: 0x20)
            return .enable(names)

        // select = "SELECT" SP mailbox [select-params]; select-params = SP "(" select-param *(SP select-param) ")"
        case "SELECT", "EXAMINE":
            try space()
            let mailbox = try mailbox()
            var condStore = false
            var qresync: QResyncParameters?
            if peek(is: 0x20) {
                index += 1
                // RFC 7162 §3.1.8 CONDSTORE; §3.2.5 QRESYNC (uidvalidity mod-sequence-value [SP known-uids]
                // [SP seq-match-data]); seq-match-data = "(" known-sequence-set SP known-uid-set ")".
                _ = try list(allowEmpty: false) { c -> Int in
                    let param = try c.word()
                    switch param {
                    case "CONDSTORE":
                        condStore = true
                    case "QRESYNC":
                        guard qresync == nil else { throw ParseFailure.bad("QRESYNC given twice") }
                        try c.space()
                        try c.expect(UInt8(ascii: "("), "(")
                        let uidValidity = try c.nzNumber()
                        try c.space()
                        let modSeq = try c.number64()
                        guard modSeq > 0 else { throw ParseFailure.bad("mod-sequence-value must not be zero") }
                        var parameters = QResyncParameters(uidValidity: uidValidity, modSeq: modSeq)
                        if c.peek(is: 0x20) {
                            c.index += 1
                            if c.peek(is: UInt8(ascii: "(")) {
                                parameters.sequenceMatch = try c.sequenceMatch()
                            } else {
                                parameters.knownUIDs = try c.sequenceSet()
                                if c.peek(is: 0x20) {
                                    c.index += 1
                                    parameters.sequenceMatch = try c.sequenceMatch()
                                }
                            }
                        }
                        try c.expect(UInt8(ascii: ")"), ")")
                        if case .saved? = parameters.knownUIDs { throw ParseFailure.bad("$ is not allowed in QRESYNC") }
                        qresync = parameters
                    default:
                        throw ParseFailure.bad("unsupported SELECT parameter \(param)")
                    }
                    return 0
                }
            }
            return name == "SELECT" ? .select(mailbox, condStore: condStore, qresync: qresync)
                                     : .examine(mailbox, condStore: condStore, qresync: qresync)

        // create = "CREATE" SP mailbox [create-params]; RFC 6154 §3: "USE" SP "(" [use-attr *(SP use-attr)] ")"
        case "CREATE":
            try space()
            let mailbox = try mailbox()
            var uses: [String] = []
            if peek(is: 0x20) {
                index += 1
                let params = try list(allowEmpty: false) { c -> [String] in
                    let param = try c.word()
                    guard param == "USE" else { throw ParseFailure.bad("unsupported CREATE parameter \(param)") }
                    try c.space()
                    return try c.list { c in
                        try c.expect(UInt8(ascii: "\\"), "a special-use attribute")
                        return "\\" + (try c.atom())
                    }
                }
                uses = params.flatMap { $0 }
            }
            return .create(mailbox, specialUse: uses)

        case "DELETE": try space(); return .delete(try mailbox())
        case "SUBSCRIBE": try space(); return .subscribe(try mailbox())
        case "UNSUBSCRIBE": try space(); return .unsubscribe(try mailbox())

        case "RENAME":
            try space()
            let from = try mailbox()
            try space()
            return .rename(from: from, to: try mailbox())

        case "LIST": return .list(try listCommand())

        // lsub = "LSUB" SP mailbox SP list-mailbox (RFC 3501)
        case "LSUB":
            try space()
            let reference = try mailbox()
            try space()
            return .lsub(reference: reference, pattern: try listMailbox())

        // status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"
        case "STATUS":
            try space()
            let mailbox = try mailbox()
            try space()
            let items = try list(allowEmpty: false) { c -> StatusAttribute in
                let w = try c.word()
                guard let a = StatusAttribute(rawValue: w) else { throw ParseFailure.bad("unknown status item \(w)") }
                return a
            }
            return .status(mailbox, items)

        case "APPEND": return try append()

        // RFC 9208 §4.1: getquota = "GETQUOTA" SP quota-root-name; getquotaroot = "GETQUOTAROOT" SP mailbox;
        // setquota = "SETQUOTA" SP quota-root-name SP setquota-list, each resource-name SP number64.
        case "GETQUOTA":
            try space()
            return .getQuota(root: try astring())
        case "GETQUOTAROOT":
            try space()
            return .getQuotaRoot(try mailbox())
        case "SETQUOTA":
            try space()
            let root = try astring()
            try space()
            _ = try list { c -> UInt64 in
                _ = try c.atom()
                try c.space()
                return try c.number64()
            }
            return .setQuota(root: root)

        // id = "ID" SP id-params-list; id-params-list = "(" *(string SP nstring) ")" / nil (RFC 2971 §4)
        case "ID":
            try space()
            if try peek() != UInt8(ascii: "(") {
                guard try word() == "NIL" else { throw ParseFailure.bad("expected ( or NIL") }
                return .id(nil)
            }
            try expect(UInt8(ascii: "("), "(")
            var fields: [IDField] = []
            while try peek() != UInt8(ascii: ")") {
                if !fields.isEmpty { try space() }
                let key = String(decoding: try string(), as: UTF8.self)
                try space()
                let value = try nstring().map { String(decoding: $0, as: UTF8.self) }
                fields.append(IDField(key: key, value: value))
                guard fields.count <= 30 else { throw ParseFailure.bad("too many ID fields") }  // RFC 2971 §3.3
            }
            index += 1
            return .id(fields)

        case "SEARCH": return .search(try searchCommand(), uid: false)
        case "SORT": return .sort(try sortCommand(), uid: false)
        case "THREAD": return .thread(try threadCommand(), uid: false)
        case "FETCH": return try fetch(uid: false)
        case "STORE": return try store(uid: false)
        case "COPY", "MOVE":
            try space()
            let set = try sequenceSet()
            try space()
            let target = try mailbox()
            return name == "COPY" ? .copy(set, target, uid: false) : .move(set, target, uid: false)

        // uid = "UID" SP (copy / move / fetch / search / store / uid-expunge), and sort / thread (RFC 5256 §5)
        case "UID":
            try space()
            let sub = try word()
            switch sub {
            case "SEARCH": return .search(try searchCommand(), uid: true)
            case "SORT": return .sort(try sortCommand(), uid: true)
            case "THREAD": return .thread(try threadCommand(), uid: true)
            case "FETCH": return try fetch(uid: true)
            case "STORE": return try store(uid: true)
            case "COPY", "MOVE":
                try space()
                let set = try sequenceSet()
                try space()
                let target = try mailbox()
                return sub == "COPY" ? .copy(set, target, uid: true) : .move(set, target, uid: true)
            case "EXPUNGE":
                try space()
                return .uidExpunge(try sequenceSet())
            default:
                throw ParseFailure.bad("unknown UID command \(sub)")
            }

        default:
            throw ParseFailure.bad("unknown command \(name)")
        }
    }

    // MARK: LIST (RFC 9051 §6.3.9, RFC 5258 §6, RFC 5819)

    /// list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
    mutating func listCommand() throws -> ListCommand {
        try space()
        var selection: [String] = []
        if try peek() == UInt8(ascii: "(") {
            selection = try list { try $0.word() }
            try space()
        }
        let reference = try mailbox()
        try space()
        var patterns: [MailboxName]
        if try peek() == UInt8(ascii: "(") {
            patterns = try list(allowEmpty: false) { try $0.listMailbox() }
        } else {
            patterns = [try listMailbox()]
        }
        var returns: [String] = []
        var status: [StatusAttribute] = []
        if peek(is: 0x20) {
            index += 1
            guard try word() == "RETURN" else { throw ParseFailure.bad("expected RETURN") }
            try space()
            returns = try list { c -> String in
                let option = try c.word()
                if option == "STATUS" {
                    try c.space()
                    status = try c.list(allowEmpty: false) { c -> StatusAttribute in
                        let w = try c.word()
                        guard let a = StatusAttribute(rawValue: w) else { throw ParseFailure.bad("unknown status item \(w)") }
                        return a
                    }
                }
                return option
            }
        }
        return ListCommand(reference: reference, patterns: patterns, selectionOptions: selection,
                           returnOptions: returns, returnStatus: status)
    }

    // MARK: APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 6855 §4 UTF8)

    /// append = "APPEND" SP mailbox 1*append-message; append-message = SP [flag-list SP] [date-time SP] append-data
    mutating func append() throws -> IMAPCommand.Kind {
        try space()
        let mailbox = try mailbox()
        var messages: [AppendMessage] = []
        repeat {
            try space()
            var flags: [Flag] = []
            var date: Date?
            if try peek() == UInt8(ascii: "(") {
                flags = try flagList()
                try space()
            }
            if try peek() == UInt8(ascii: "\"") {
                date = try dateTime()
                try space()
            }
            let bytes: [UInt8]
            let b = try peek()
            if b == UInt8(ascii: "U") || b == UInt8(ascii: "u") {
                // UTF8 "(" literal8 ")" (RFC 6855 §4)
                guard try word() == "UTF8" else { throw ParseFailure.bad("expected a literal") }
                try space()
                try expect(UInt8(ascii: "("), "(")
                bytes = try literal(allowBinary: true)
                try expect(UInt8(ascii: ")"), ")")
            } else {
                bytes = try literal(allowBinary: true)
            }
            messages.append(AppendMessage(flags: flags, internalDate: date, bytes: bytes))
            guard messages.count <= limits.maxListItems else { throw ParseFailure.bad("too many messages") }
        } while peek(is: 0x20)
        return .append(mailbox, messages)
    }

    // MARK: FETCH (RFC 9051 §6.4.5, RFC 7162 §3.1.4)

    /// fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]
    mutating func fetch(uid: Bool) throws -> IMAPCommand.Kind {
        try space()
        let set = try sequenceSet()
        try space()
        var attributes: [FetchAttribute]
        if try peek() == UInt8(ascii: "(") {
            attributes = try list(allowEmpty: false) { try $0.fetchAttribute() }
        } else {
            let save = index
            let w = try word()
            switch w {
            case "ALL": attributes = [.flags, .internalDate, .rfc822Size, .envelope]
            case "FAST": attributes = [.flags, .internalDate, .rfc822Size]
            case "FULL": attributes = [.flags, .internalDate, .rfc822Size, .envelope, .bodyStructure(extensible: false)]
            default:
                index = save
                attributes = [try fetchAttribute()]
            }
        }
        var modifiers = FetchModifiers()
        if peek(is: 0x20) {
            index += 1
            _ = try list(allowEmpty: false) { c -> Int in
                let w = try c.word()
                switch w {
                case "CHANGEDSINCE":
                    try c.space()
                    modifiers.changedSince = try c.number64()
                case "VANISHED":
                    modifiers.vanished = true
                default:
                    throw ParseFailure.bad("unknown FETCH modifier \(w)")
                }
                return 0
            }
        }
        return .fetch(set, attributes, modifiers: modifiers, uid: uid)
    }

    mutating func fetchAttribute() throws -> FetchAttribute {
        let name = try word()
        switch name {
        case "ENVELOPE": return .envelope
        case "FLAGS": return .flags
        case "INTERNALDATE": return .internalDate
        case "RFC822": return .rfc822
        case "RFC822.HEADER": return .rfc822Header
        case "RFC822.SIZE": return .rfc822Size
        case "RFC822.TEXT": return .rfc822Text
        case "BODYSTRUCTURE": return .bodyStructure(extensible: true)
        case "UID": return .uid
        case "MODSEQ": return .modSeq
        case "EMAILID": return .emailID
        case "THREADID": return .threadID
        case "BODY", "BODY.PEEK":
            guard peek(is: UInt8(ascii: "[")) else {
                guard name == "BODY" else { throw ParseFailure.bad("BODY.PEEK needs a section") }
                return .bodyStructure(extensible: false)
            }
            let section = try section()
            return .bodySection(section, partial: try partial(), peek: name == "BODY.PEEK")
        case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
            try expect(UInt8(ascii: "["), "[")
            var part: [Int] = []
            if try peek() != UInt8(ascii: "]") { part = try sectionPart() }
            try expect(UInt8(ascii: "]"), "]")
            if name == "BINARY.SIZE" { return .binarySize(part: part) }
            return .binary(part: part, partial: try partial(), peek: name == "BINARY.PEEK")
        default:
            throw ParseFailure.bad("unknown FETCH attribute \(name)")
        }
    }

    /// section-part = nz-number *("." nz-number)
    mutating func sectionPart() throws -> [Int] {
        var part = [Int(try nzNumber())]
        while peek(is: UInt8(ascii: ".")), index + 1 < bytes.count, IMAPGrammar.isDigit(bytes[index + 1]) {
            index += 1
            part.append(Int(try nzNumber()))
            guard part.count <= limits.maxNestingDepth else { throw ParseFailure.bad("section too deep") }
        }
        return part
    }

    /// section = "[" [section-spec] "]"; section-spec = section-msgtext / (section-part ["." section-text])
    mutating func section() throws -> SectionSpec {
        try expect(UInt8(ascii: "["), "[")
        var spec = SectionSpec()
        if try peek() == UInt8(ascii: "]") {
            index += 1
            return spec
        }
        if IMAPGrammar.isDigit(try peek()) {
            spec.part = try sectionPart()
            if try peek() == UInt8(ascii: "]") {
                index += 1
                return spec
            }
            try expect(UInt8(ascii: "."), ".")
        }
        let text = try word()
        switch text {
        case "HEADER": spec.text = .header
        case "TEXT": spec.text = .text
        case "MIME":
            guard !spec.part.isEmpty else { throw ParseFailure.bad("MIME needs a part number") }
            spec.text = .mime
        case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
            try space()
            let names = try list(allowEmpty: false) { c in String(decoding: try c.astring(), as: UTF8.self) }
            spec.text = text == "HEADER.FIELDS" ? .headerFields(names) : .headerFieldsNot(names)
        default:
            throw ParseFailure.bad("unknown section \(text)")
        }
        try expect(UInt8(ascii: "]"), "]")
        return spec
    }

    /// partial = "<" number64 "." nz-number64 ">"
    mutating func partial() throws -> Partial? {
        guard peek(is: UInt8(ascii: "<")) else { return nil }
        index += 1
        let offset = try number()
        try expect(UInt8(ascii: "."), ".")
        let length = try nzNumber()
        try expect(UInt8(ascii: ">"), ">")
        return Partial(offset: offset, length: length)
    }

    // MARK: STORE (RFC 9051 §6.4.6, RFC 7162 §3.1.3)

    /// store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags
    mutating func store(uid: Bool) throws -> IMAPCommand.Kind {
        try space()
        let set = try sequenceSet()
        try space()
        var unchangedSince: UInt64?
        if try peek() == UInt8(ascii: "(") {
            _ = try list(allowEmpty: false) { c -> Int in
                guard try c.word() == "UNCHANGEDSINCE" else { throw ParseFailure.bad("unknown STORE modifier") }
                try c.space()
                unchangedSince = try c.number64()
                return 0
            }
            try space()
        }
        var mode = StoreAction.Mode.replace
        if try peek() == UInt8(ascii: "+") { mode = .add; index += 1 } else if try peek() == UInt8(ascii: "-") { mode = .remove; index += 1 }
        let item = try word()
        guard item == "FLAGS" || item == "FLAGS.SILENT" else { throw ParseFailure.bad("expected FLAGS") }
        try space()
        var flags: [Flag]
        if try peek() == UInt8(ascii: "(") {
            flags = try flagList()
        } else {
            flags = [try flag()]
            while peek(is: 0x20) {
                index += 1
                flags.append(try flag())
                guard flags.count <= limits.maxListItems else { throw ParseFailure.bad("too many flags") }
            }
        }
        return .store(set, StoreAction(mode: mode, silent: item == "FLAGS.SILENT", flags: flags),
                      unchangedSince: unchangedSince, uid: uid)
    }

    // MARK: SEARCH (RFC 9051 §6.4.4, RFC 4731, RFC 5182)

    /// search = "SEARCH" [search-return-opts] SP search-program;
    /// search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)
    mutating func searchCommand() throws -> SearchCommand {
        try space()
        var returnOptions: [SearchReturnOption]?
        var charset: String?
        var keys: [SearchKey] = []
        var first = true
        while true {
            if !first {
                guard peek(is: 0x20) else { break }
                index += 1
            }
            let save = index
            if first || keys.isEmpty, let w = try? word() {
                if w == "RETURN", returnOptions == nil, keys.isEmpty, charset == nil {
                    try space()
                    returnOptions = try list { c -> SearchReturnOption in
                        let o = try c.word()
                        guard let option = SearchReturnOption(rawValue: o) else { throw ParseFailure.bad("unknown RETURN option \(o)") }
                        return option
                    }
                    first = false
                    continue
                }
                if w == "CHARSET", charset == nil, keys.isEmpty {
                    try space()
                    charset = try astringText().uppercased()
                    first = false
                    continue
                }
            }
            index = save
            keys.append(try searchKey())
            guard keys.count <= limits.maxListItems else { throw ParseFailure.bad("too many search keys") }
            first = false
        }
        guard !keys.isEmpty else { throw ParseFailure.bad("expected a search key") }
        return SearchCommand(charset: charset, key: keys.count == 1 ? keys[0] : .and(keys), returnOptions: returnOptions)
    }

    mutating func searchString() throws -> String { String(decoding: try astring(), as: UTF8.self) }

    mutating func searchKey() throws -> SearchKey {
        let b = try peek()
        if b == UInt8(ascii: "(") {
            let keys = try list(allowEmpty: false) { try $0.searchKey() }
            return keys.count == 1 ? keys[0] : .and(keys)
        }
        if IMAPGrammar.isDigit(b) || b == UInt8(ascii: "*") || b == UInt8(ascii: "$") {
            return .sequenceSet(try sequenceSet())
        }
        let key = try word()
        switch key {
        case "ALL": return .all
        case "ANSWERED": return .answered
        case "DELETED": return .deleted
        case "DRAFT": return .draft
        case "FLAGGED": return .flagged
        case "SEEN": return .seen
        case "UNANSWERED": return .unanswered
        case "UNDELETED": return .undeleted
        case "UNDRAFT": return .undraft
        case "UNFLAGGED": return .unflagged
        case "UNSEEN": return .unseen
        case "NEW": return .new
        case "OLD": return .old
        case "RECENT": return .recent
        case "KEYWORD": try space(); return .keyword(try atom())
        case "UNKEYWORD": try space(); return .unkeyword(try atom())
        case "BCC": try space(); return .bcc(try searchString())
        case "CC": try space(); return .cc(try searchString())
        case "FROM": try space(); return .from(try searchString())
        case "TO": try space(); return .to(try searchString())
        case "SUBJECT": try space(); return .subject(try searchString())
        case "BODY": try space(); return .body(try searchString())
        case "TEXT": try space(); return .text(try searchString())
        case "HEADER":
            try space()
            let field = try searchString()
            try space()
            return .header(field, try searchString())
        case "BEFORE": try space(); return .before(try date())
        case "ON": try space(); return .on(try date())
        case "SINCE": try space(); return .since(try date())
        case "SENTBEFORE": try space(); return .sentBefore(try date())
        case "SENTON": try space(); return .sentOn(try date())
        case "SENTSINCE": try space(); return .sentSince(try date())
        case "LARGER": try space(); return .larger(try number64())
        case "SMALLER": try space(); return .smaller(try number64())
        case "UID": try space(); return .uid(try sequenceSet())
        case "MODSEQ":
            // search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer (RFC 7162 §3.1.5)
            try space()
            if try peek() == UInt8(ascii: "\"") {
                _ = try quoted()
                try space()
                _ = try word()
                try space()
            }
            return .modSeq(try number64())
        case "NOT":
            try space()
            try enter()
            defer { leave() }
            return .not(try searchKey())
        case "OR":
            try space()
            try enter()
            defer { leave() }
            let a = try searchKey()
            try space()
            return .or(a, try searchKey())
        default:
            throw ParseFailure.bad("unknown search key \(key)")
        }
    }
}
