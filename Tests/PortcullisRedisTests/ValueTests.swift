@testable import PortcullisRedis
import NIOCore
import Testing

@Suite("Redis values, arguments, errors, scripts, backoff")
struct ValueTests {
    @Test("RedisValue accessors")
    func accessors() {
        #expect(RedisValue.status("OK").string == "OK")
        #expect(RedisValue.bulk("42").int == 42)
        #expect(RedisValue.status("7").int == 7)
        #expect(RedisValue.integer(-3).int == -3)
        #expect(RedisValue.bulk("x").int == nil)
        #expect(RedisValue.bulkString([0xff, 0xfe]).string == nil, "invalid UTF-8 is not a string")
        #expect(RedisValue.bulkString([0xff, 0xfe]).bytes == [0xff, 0xfe])
        #expect(RedisValue.status("OK").bytes == Array("OK".utf8))
        #expect(RedisValue.null.isNull)
        #expect(!RedisValue.bulkString([]).isNull)
        #expect(RedisValue.array([.integer(1)]).array == [.integer(1)])
        #expect(RedisValue.integer(1).array == nil)
        #expect(RedisValue.error("ERR x").string == nil)
    }

    @Test("RedisArgument encodings")
    func arguments() {
        let literal: RedisArgument = "héllo"
        #expect(literal.bytes == Array("héllo".utf8))
        let number: RedisArgument = 42
        #expect(number.bytes == Array("42".utf8))
        #expect(RedisArgument(Int64.min).bytes == Array("-9223372036854775808".utf8))
        #expect(RedisArgument(1.5).bytes == Array("1.5".utf8))
        #expect(RedisArgument(-Double.infinity).bytes == Array("-inf".utf8))
        #expect(RedisArgument(bytes: [0, 13, 10]).bytes == [0, 13, 10])
    }

    @Test("hiredis formats binary arguments with their lengths")
    func formatter() throws {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        try RESPFormatter.format(["SET", RedisArgument(bytes: [0x61, 0, 0x0d, 0x0a]), ""], into: &buffer)
        let expected = "*3\r\n$3\r\nSET\r\n$4\r\na\0\r\n\r\n$0\r\n\r\n"
        #expect(buffer.readableBytesView.elementsEqual(Array(expected.utf8)))
        #expect(throws: RedisError.self) { try RESPFormatter.format([], into: &buffer) }
    }

    @Test("error codes and descriptions")
    func errors() {
        #expect(RedisError.errorReply("NOSCRIPT No matching script").errorCode == "NOSCRIPT")
        #expect(RedisError.errorReply("WRONGTYPE Operation against a key").errorCode == "WRONGTYPE")
        #expect(RedisError.timeout("127.0.0.1:1: x").errorCode == nil)
        #expect(RedisError.connectionRefused("127.0.0.1:6390: connection refused").description.contains("127.0.0.1:6390: connection refused"))
        #expect(RedisError.errorReply("READONLY You can't write").description == "Redis error reply: READONLY You can't write")
        #expect(RedisError.clientClosed.description == "the Redis client was closed")
    }

    @Test("script SHA-1 matches the known digest")
    func scriptDigest() {
        // sha1("return 1") as printed by `redis-cli SCRIPT LOAD "return 1"`.
        #expect(RedisScript("return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }

    @Test("backoff grows exponentially, is capped and jittered within bounds")
    func backoff() {
        let exact = RedisBackoff(initial: .milliseconds(50), maximum: .seconds(2), jitter: 0)
        #expect(exact.delay(forAttempt: 0) == .milliseconds(50))
        #expect(exact.delay(forAttempt: 1) == .milliseconds(100))
        #expect(exact.delay(forAttempt: 3) == .milliseconds(400))
        #expect(exact.delay(forAttempt: 10) == .seconds(2))
        #expect(exact.delay(forAttempt: 1000) == .seconds(2))
        let jittered = RedisBackoff.default
        let samples = (0..<200).map { _ in jittered.delay(forAttempt: 2) }
        #expect(samples.allSatisfy { $0 >= .milliseconds(160) && $0 <= .milliseconds(240) })
        #expect(Set(samples).count > 1, "jitter varies the delay")
    }
}
