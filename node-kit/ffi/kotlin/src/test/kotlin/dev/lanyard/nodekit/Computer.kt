package dev.lanyard.nodekit

import java.io.File
import java.net.ServerSocket
import java.nio.file.Files
import java.util.concurrent.TimeUnit

/**
 * A real `lanyard up` (gateway and bridge) on loopback, with the real claude against the model the Rust
 * side scripts. Its bridge keeps one port across restarts, as a computer's does.
 */
class Computer : AutoCloseable {
    val home: File = Files.createTempDirectory("lanyard-home").toFile()
    val bridgePort = ServerSocket(0).use { it.localPort }
    private var process: Process? = null
    lateinit var gatewayUrl: String
        private set

    init {
        start()
    }

    /** Starts `lanyard up` on this home and waits for its banner. */
    fun start() {
        val command = listOf(
            env("LANYARD_BIN"), "up", "--port", "0", "--bridge-port", bridgePort.toString(),
            "--bridge-bind", "127.0.0.1", "--key-store", "file", "--mdns", "off", "--no-console",
            "--claude", env("LANYARD_TEST_CLAUDE"), "--cwd", env("LANYARD_TEST_CWD"),
        )
        val builder = ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT)
        builder.environment()["LANYARD_HOME"] = home.path
        builder.environment()["RUST_LOG"] = "warn"
        builder.environment().remove("LANYARD_GATEWAY_URL")
        for (line in env("LANYARD_TEST_CLAUDE_ENV").lines().filter { it.isNotBlank() }) {
            val (key, value) = line.split("=", limit = 2)
            builder.environment()[key] = value
        }
        val started = builder.start()
        process = started
        val banner = StringBuilder()
        val reader = started.inputStream.bufferedReader()
        while (true) {
            val line = reader.readLine() ?: error("lanyard up ended before its banner:\n$banner")
            banner.appendLine(line)
            if (line.contains("Stop with Ctrl-C")) break
        }
        // The rest of stdout must keep draining, or `up` would block on a full pipe.
        Thread { reader.forEachLine { } }.apply { isDaemon = true }.start()
        gatewayUrl = after(banner.toString(), "Gateway:")
    }

    /** Stops `lanyard up` as SIGTERM does, and waits for it to exit. */
    fun stop() {
        val running = process ?: return
        running.destroy()
        check(running.waitFor(20, TimeUnit.SECONDS)) { "lanyard up did not stop" }
        process = null
    }

    /** Runs the owner's CLI against this computer; its stdout. */
    fun lanyard(vararg args: String): String {
        val builder = ProcessBuilder(listOf(env("LANYARD_BIN"), "--url", gatewayUrl) + args)
        builder.environment()["LANYARD_HOME"] = home.path
        val cli = builder.start()
        val out = cli.inputStream.bufferedReader().readText()
        val err = cli.errorStream.bufferedReader().readText()
        check(cli.waitFor(30, TimeUnit.SECONDS) && cli.exitValue() == 0) { "lanyard ${args.toList()}: $err" }
        return out
    }

    /** A fresh door-2 connection string. */
    fun connectionString(): String = lanyard("pair", "--string").trim()

    override fun close() {
        stop()
        home.deleteRecursively()
    }

    companion object {
        fun env(name: String): String = System.getenv(name) ?: error("$name is not set: run this suite through `cargo test -p lanyard --test kotlin_sdk`")

        private fun after(banner: String, label: String): String =
            banner.lines().firstNotNullOf { it.trim().removePrefix(label).takeIf { rest -> rest != it.trim() } }.trim().split(" ")[0]
    }
}

/**
 * A TCP relay on loopback in front of the bridge, which can cut every connection it carries and refuse
 * new ones: the Wi-Fi going away under a phone.
 */
class Cuttable(private val target: Int) : AutoCloseable {
    private val server = ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())
    val port: Int = server.localPort
    private val open = java.util.concurrent.CopyOnWriteArrayList<java.net.Socket>()

    init {
        Thread {
            while (!server.isClosed) {
                val inbound = runCatching { server.accept() }.getOrNull() ?: break
                val outbound = java.net.Socket("127.0.0.1", target)
                open += listOf(inbound, outbound)
                pipe(inbound, outbound)
                pipe(outbound, inbound)
            }
        }.apply { isDaemon = true }.start()
    }

    private fun pipe(from: java.net.Socket, to: java.net.Socket) = Thread {
        runCatching { from.getInputStream().copyTo(to.getOutputStream()) }
        runCatching { to.close() }
        runCatching { from.close() }
    }.apply { isDaemon = true }.start()

    /** Cuts every connection and refuses new ones. */
    fun cut() {
        server.close()
        open.forEach { runCatching { it.close() } }
    }

    override fun close() = cut()
}

/** A key store in the app's memory: what a Keychain or Keystore wrapper looks like. */
class MemoryKeyStore : KeyStore {
    val items = java.util.concurrent.ConcurrentHashMap<String, ByteArray>()

    override fun read(item: String): ByteArray? = items[item]

    override fun write(item: String, value: ByteArray) {
        items[item] = value
    }

    override fun delete(item: String) {
        items.remove(item)
    }
}

/** Waits until [condition] holds, polling, at most [seconds]. */
fun eventually(seconds: Long, what: String, condition: () -> Boolean) {
    val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
    while (!condition()) {
        check(System.nanoTime() < deadline) { "timed out waiting for $what" }
        Thread.sleep(50)
    }
}
