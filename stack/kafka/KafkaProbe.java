import java.util.Collection;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.common.Node;

/**
 * KafkaProbe BOOTSTRAP SECONDS NODES [PID...]: wait (one JVM, no restarts) until the cluster
 * answers DescribeCluster with at least NODES live brokers and a Metadata request; print
 * "nodes=N controller=ID cluster=ID topics=N". Exit 1 after SECONDS without that answer, 2 as
 * soon as one of the processes PID... (the brokers) is gone.
 */
public class KafkaProbe {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    long deadline = System.nanoTime() + Long.parseLong(args[1]) * 1_000_000_000L;
    int want = Integer.parseInt(args[2]);
    java.util.List<ProcessHandle> brokers = new java.util.ArrayList<>();
    for (int i = 3; i < args.length; i++) {
      ProcessHandle.of(Long.parseLong(args[i])).ifPresent(brokers::add);
    }
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("client.id", "rtds-stack-probe");
    p.put("request.timeout.ms", "2000");
    p.put("default.api.timeout.ms", "3000");
    p.put("socket.connection.setup.timeout.ms", "1000");
    p.put("socket.connection.setup.timeout.max.ms", "2000");
    p.put("reconnect.backoff.ms", "100");
    p.put("reconnect.backoff.max.ms", "500");
    p.put("retry.backoff.ms", "100");
    p.put("retry.backoff.max.ms", "500");
    String last = "no answer";
    Admin admin = Admin.create(p);
    while (true) {
      try {
        DescribeClusterResult c = admin.describeCluster(new DescribeClusterOptions().timeoutMs(3000));
        Collection<Node> nodes = c.nodes().get();
        Node controller = c.controller().get();
        String cluster = c.clusterId().get();
        Set<String> topics = admin.listTopics(new ListTopicsOptions().listInternal(true).timeoutMs(3000)).names().get();
        if (nodes.size() >= want) {
          System.out.printf("nodes=%d controller=%s cluster=%s topics=%d%n",
              nodes.size(), controller == null ? "none" : controller.idString(), cluster, topics.size());
          admin.close(java.time.Duration.ofSeconds(1));
          System.exit(0);
        }
        last = nodes.size() + " of " + want + " brokers in the metadata";
      } catch (ExecutionException e) {
        last = String.valueOf(e.getCause());
      }
      if (brokers.stream().anyMatch(b -> !b.isAlive())) {
        System.err.println("the broker process exited");
        System.exit(2);
      }
      if (System.nanoTime() > deadline) {
        System.err.println("no answer from " + bootstrap + ": " + last);
        System.exit(1);
      }
      Thread.sleep(250);
    }
  }
}
