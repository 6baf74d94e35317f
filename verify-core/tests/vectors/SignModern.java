// Signs every document in a directory with every ECDSA or EdDSA algorithm
// the service accepts, using java.security.Signature, and prints TSV rows
// for modern.tsv.
//   java SignModern.java <pkcs8-der-private-key> <key-id> <docs-dir>
import java.nio.file.*;
import java.security.*;
import java.security.spec.*;
import java.util.*;

public class SignModern {
    public static void main(String[] args) throws Exception {
        byte[] der = Files.readAllBytes(Path.of(args[0]));
        boolean ed = args[1].startsWith("ed");
        PrivateKey key = KeyFactory.getInstance(ed ? "Ed25519" : "EC")
            .generatePrivate(new PKCS8EncodedKeySpec(der));
        String[] docs = {"text.txt", "empty.bin", "big.bin"};
        String[] algorithms = ed
            ? new String[] {"Ed25519", "EdDSA"}
            : new String[] {
                "SHA256withECDSA", "SHA384withECDSA", "SHA512withECDSA",
                "SHA256withECDSAinP1363Format", "SHA384withECDSAinP1363Format",
                "SHA512withECDSAinP1363Format"};
        for (String doc : docs) {
            byte[] data = Files.readAllBytes(Path.of(args[2], doc));
            for (String algorithm : algorithms) {
                Signature s = Signature.getInstance(algorithm);
                s.initSign(key);
                s.update(data);
                System.out.println("java\t" + args[1] + "\t" + algorithm + "\t" + doc + "\t"
                    + HexFormat.of().formatHex(s.sign()) + "\ttrue");
            }
        }
    }
}
