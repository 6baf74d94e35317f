// Signs every document in a directory with every algorithm the service
// accepts, using java.security.Signature, and prints TSV rows for vectors.tsv.
//   java Sign.java <pkcs8-der-private-key> <key-id> <docs-dir>
import java.nio.file.*;
import java.security.*;
import java.security.spec.*;
import java.util.*;

public class Sign {
    public static void main(String[] args) throws Exception {
        byte[] der = Files.readAllBytes(Path.of(args[0]));
        PrivateKey key = KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(der));
        String[] docs = {"text.txt", "empty.bin", "big.bin"};
        String[][] pkcs1 = {{"SHA256withRSA"}, {"SHA384withRSA"}, {"SHA512withRSA"}, {"SHA1withRSA"}, {"MD5withRSA"}};
        String[][] pss = {{"SHA-256", "32", "SHA256withRSA/PSS"}, {"SHA-384", "48", "SHA384withRSA/PSS"}, {"SHA-512", "64", "SHA512withRSA/PSS"}};
        for (String doc : docs) {
            byte[] data = Files.readAllBytes(Path.of(args[2], doc));
            for (String[] a : pkcs1) {
                Signature s = Signature.getInstance(a[0]);
                s.initSign(key);
                s.update(data);
                row(args[1], a[0], doc, s.sign());
            }
            for (String[] a : pss) {
                Signature s = Signature.getInstance("RSASSA-PSS");
                s.setParameter(new PSSParameterSpec(a[0], "MGF1", new MGF1ParameterSpec(a[0]), Integer.parseInt(a[1]), 1));
                byte[] sig;
                try {
                    s.initSign(key);
                    s.update(data);
                    sig = s.sign();
                } catch (InvalidKeyException | SignatureException tooShort) {
                    continue; // SHA-512 PSS does not fit a 1024-bit key
                }
                row(args[1], a[2], doc, sig);
            }
        }
    }

    static void row(String key, String alg, String doc, byte[] sig) {
        System.out.println("java\t" + key + "\t" + alg + "\t" + doc + "\t" + HexFormat.of().formatHex(sig) + "\ttrue");
    }
}
