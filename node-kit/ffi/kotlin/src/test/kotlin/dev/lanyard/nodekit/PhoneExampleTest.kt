package dev.lanyard.nodekit

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.io.ByteArrayInputStream
import java.io.ByteArrayOutputStream
import java.io.File
import java.io.PrintStream
import java.nio.file.Files

/** The example "phone" as a developer runs it: pairs with the printed string, asks, answers a prompt. */
class PhoneExampleTest {
    @Test
    fun `the example pairs, streams the answer and answers a permission prompt`() {
        Computer().use { computer ->
            val state = Files.createTempDirectory("phone-state").toFile()
            val string = computer.connectionString()
            val first = run("y\n") { dev.lanyard.nodekit.example.main(arrayOf("--state", state.path, "--connect", string, "--no-mdns", "say", "STREAM")) }
            assertEquals("Hello from the computer\n", first)
            // Started again, it is already paired (the key and the pairing are in --state).
            val second = run("y\n") { dev.lanyard.nodekit.example.main(arrayOf("--state", state.path, "--no-mdns", "PERMIT", "example.txt")) }
            assertTrue(second.contains("Allow? [y/N]") && second.trim().endsWith("ran: wrote example.txt"), second)
            assertTrue(File(state, "device-key").isFile && File(state, "computers").isFile)
            state.deleteRecursively()
        }
    }

    /** Runs [block] with [input] on stdin; what it printed on stdout. */
    private fun run(input: String, block: () -> Unit): String {
        val (stdin, stdout) = System.`in` to System.out
        val printed = ByteArrayOutputStream()
        System.setIn(ByteArrayInputStream(input.toByteArray()))
        System.setOut(PrintStream(printed, true))
        try {
            block()
        } finally {
            System.setIn(stdin)
            System.setOut(stdout)
        }
        return printed.toString()
    }
}
