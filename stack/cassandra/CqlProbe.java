// Runs CQL statements against 127.0.0.1:9042 and prints each row as
// pipe-separated text: the stack's readiness check and its `cassandra_cql`.
// Usage: java -cp <driver classpath> CqlProbe HOST PORT "CQL" ["CQL"...]
import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverConfigLoader;
import com.datastax.oss.driver.api.core.cql.ColumnDefinition;
import com.datastax.oss.driver.api.core.cql.ResultSet;
import com.datastax.oss.driver.api.core.cql.Row;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

public class CqlProbe {
  public static void main(String[] args) {
    if (args.length < 3) {
      System.err.println("usage: CqlProbe HOST PORT CQL...");
      System.exit(2);
    }
    DriverConfigLoader config = DriverConfigLoader.programmaticBuilder()
        .withDuration(DefaultDriverOption.CONNECTION_CONNECT_TIMEOUT, Duration.ofSeconds(3))
        .withDuration(DefaultDriverOption.CONNECTION_INIT_QUERY_TIMEOUT, Duration.ofSeconds(3))
        .withDuration(DefaultDriverOption.REQUEST_TIMEOUT, Duration.ofSeconds(20))
        .withDuration(DefaultDriverOption.CONTROL_CONNECTION_TIMEOUT, Duration.ofSeconds(3))
        .build();
    try (CqlSession session = CqlSession.builder()
        .addContactPoint(new InetSocketAddress(args[0], Integer.parseInt(args[1])))
        .withLocalDatacenter("datacenter1")
        .withConfigLoader(config)
        .build()) {
      for (int i = 2; i < args.length; i++) {
        ResultSet rs = session.execute(args[i]);
        for (Row row : rs) {
          List<String> cells = new ArrayList<>();
          for (ColumnDefinition c : row.getColumnDefinitions()) {
            Object v = row.getObject(c.getName());
            cells.add(v == null ? "" : v.toString());
          }
          System.out.println(String.join("|", cells));
        }
      }
    } catch (Exception e) {
      System.err.println("cql: " + e.getMessage());
      System.exit(1);
    }
  }
}
