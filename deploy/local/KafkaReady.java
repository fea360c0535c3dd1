// Readiness probe for deploy/local/kafka.sh: exits 0 once the broker answers a metadata
// request (AdminClient.listTopics sends one), 1 otherwise. Run with the single-file source
// launcher against the broker's own jars:
//   java -cp "$KAFKA_LIBS/*" deploy/local/KafkaReady.java 127.0.0.1:19092 [timeout-ms [client.properties]]
// client.properties (may be empty: none) holds the client's security settings (secured mode).
import java.io.FileReader;
import java.io.Reader;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class KafkaReady {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        int timeoutMs = args.length > 1 ? Integer.parseInt(args[1]) : 10000;
        Properties props = new Properties();
        if (args.length > 2 && !args[2].isEmpty()) {
            try (Reader reader = new FileReader(args[2])) {
                props.load(reader);
            }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        try (Admin admin = Admin.create(props)) {
            int count = admin.listTopics().names().get(timeoutMs, TimeUnit.MILLISECONDS).size();
            String clusterId = admin.describeCluster().clusterId().get(timeoutMs, TimeUnit.MILLISECONDS);
            System.out.println("broker " + bootstrap + " ready: cluster " + clusterId + ", "
                + count + " topics");
        } catch (Exception e) {
            System.err.println("broker " + bootstrap + " not ready: " + e);
            System.exit(1);
        }
    }
}
