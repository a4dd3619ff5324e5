// A private nginx (Debian's) serving static files over HTTPS on a loopback port, with its own
// config (-c) and prefix (-p): the MTA-STS policy host of the end-to-end tests (RFC 8461 §3.3).
// Also a throwaway certificate authority made with the openssl command, whose certificates both
// nginx and a receiving Facteur present, and which the sending Facteur trusts (tls_trust_roots).

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A test CA on disk: `ca.pem` and a key; issues server certificates for given names.
public struct TestCertificateAuthority: Sendable {
    public let directory: URL
    public var certificatePath: String { directory.appendingPathComponent("ca.pem").path }
    let openssl: String

    public static func openssl() -> String? { ToolRunner.find(["/usr/bin/openssl", "/usr/local/bin/openssl"]) }

    public init(directory: URL) throws {
        guard let openssl = Self.openssl() else { throw ToolRunner.Failure(description: "openssl is not installed") }
        self.openssl = openssl
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ToolRunner.run(openssl, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                     "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Facteur E2E CA",
                                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                           in: directory)
    }

    /// Issues a server certificate for `names` (the first is the CN); returns (certificate, key) paths.
    public func issue(_ names: [String], file: String) throws -> (certificate: String, key: String) {
        let key = "\(file).key", csr = "\(file).csr", certificate = "\(file).pem", ext = "\(file).ext"
        try ("subjectAltName=" + names.map { "DNS:\($0)" }.joined(separator: ",")
             + "\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
            .write(to: directory.appendingPathComponent(ext), atomically: true, encoding: .utf8)
        try ToolRunner.run(openssl, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                                     "-out", csr, "-subj", "/CN=\(names.first ?? "localhost")"], in: directory)
        try ToolRunner.run(openssl, ["x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                                     "-out", certificate, "-days", "7", "-extfile", ext], in: directory)
        return (directory.appendingPathComponent(certificate).path, directory.appendingPathComponent(key).path)
    }

    /// RFC 6698 §2.1 "3 1 1" data: SHA-256 of the certificate's SubjectPublicKeyInfo, in hex.
    public func spkiSHA256(certificate: String) throws -> String {
        // openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256
        let pem = try ToolRunner.run(openssl, ["x509", "-in", certificate, "-noout", "-pubkey"], in: directory)
        let pubURL = directory.appendingPathComponent("spki-\(UUID().uuidString).pem")
        try pem.write(to: pubURL, atomically: true, encoding: .utf8)
        try ToolRunner.run(openssl, ["pkey", "-pubin", "-in", pubURL.path, "-outform", "DER", "-out", pubURL.path + ".der"], in: directory)
        let line = try ToolRunner.run(openssl, ["dgst", "-sha256", "-r", pubURL.path + ".der"], in: directory)
        return String(line.split(separator: " ").first ?? "")
    }
}

public final class NginxProcess: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    let process: Process

    public static func executable() -> String? {
        ToolRunner.find(["/usr/sbin/nginx", "/usr/local/sbin/nginx"])
    }

    /// Serves `files` (path under the web root → content, as text/plain for .txt) over HTTPS on
    /// 127.0.0.1:`port` with the given certificate and key.
    public init(executable: String, port: Int, certificate: String, key: String, files: [String: String],
                timeout: TimeInterval = 20) throws {
        self.port = port
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-nginx-\(UUID().uuidString)")
        let root = directory.appendingPathComponent("www")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for (path, content) in files {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try content.write(to: url, atomically: true, encoding: .utf8)
        }
        let d = directory.path
        let conf = """
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(d)/nginx.pid;
            error_log \(d)/error.log info;
            events { worker_connections 64; }
            http {
                access_log \(d)/access.log;
                client_body_temp_path \(d)/body;
                proxy_temp_path \(d)/proxy;
                fastcgi_temp_path \(d)/fastcgi;
                uwsgi_temp_path \(d)/uwsgi;
                scgi_temp_path \(d)/scgi;
                types { text/plain txt; }
                default_type application/octet-stream;
                server {
                    listen 127.0.0.1:\(port) ssl;
                    server_name _;
                    ssl_certificate \(certificate);
                    ssl_certificate_key \(key);
                    root \(root.path);
                }
            }

            """
        let confURL = directory.appendingPathComponent("nginx.conf")
        try conf.write(to: confURL, atomically: true, encoding: .utf8)
        process = try ToolRunner.start(executable, ["-c", confURL.path, "-p", d, "-e", "\(d)/error.log"],
                                       log: directory.appendingPathComponent("stdout.log"), timeout: timeout) { _ in
            UnboundProcess.canBind(port: port, type: Int32(SOCK_STREAM.rawValue)) == false
        }
    }

    /// Replaces one served file (nginx reads files on each request).
    public func write(_ path: String, _ content: String) throws {
        try content.write(to: directory.appendingPathComponent("www").appendingPathComponent(path), atomically: true, encoding: .utf8)
    }

    public var accessLog: String {
        (try? String(contentsOf: directory.appendingPathComponent("access.log"), encoding: .utf8)) ?? ""
    }

    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { if process.isRunning { process.terminate() } }
}
