// The local stack's Thrift Hive metastore (Hive 2.3 classes from pyspark's jars/) bound to 127.0.0.1 only.
// Hive 2.3's HiveMetaStore.startMetaStore() always binds the wildcard address (no bind-host setting before
// Hive 4); this mirrors its non-SASL path with an explicit InetSocketAddress. Compiled by `rtml local install`.
// Usage: java -cp "<confdir>:<pyspark>/jars/*:<classes>" HmsLoopback [host] [port]
import java.net.InetSocketAddress;
import org.apache.hadoop.hive.conf.HiveConf;
import org.apache.hadoop.hive.metastore.HiveMetaStore;
import org.apache.hadoop.hive.metastore.TServerSocketKeepAlive;
import org.apache.hadoop.hive.metastore.TSetIpAddressProcessor;
import org.apache.hadoop.hive.metastore.TUGIBasedProcessor;
import org.apache.hadoop.hive.metastore.api.ThriftHiveMetastore;
import org.apache.hadoop.hive.thrift.TUGIContainingTransport;
import org.apache.thrift.TProcessor;
import org.apache.thrift.protocol.TBinaryProtocol;
import org.apache.thrift.server.TServer;
import org.apache.thrift.server.TThreadPoolServer;
import org.apache.thrift.transport.TServerSocket;
import org.apache.thrift.transport.TTransportFactory;

public class HmsLoopback {
  public static void main(String[] args) throws Throwable {
    String host = args.length > 0 ? args[0] : "127.0.0.1";
    int port = args.length > 1 ? Integer.parseInt(args[1]) : 9083;
    HiveConf conf = new HiveConf(HiveMetaStore.class);
    ThriftHiveMetastore.Iface handler =
        HiveMetaStore.newRetryingHMSHandler("new db based metaserver", conf, false);
    boolean setUgi = conf.getBoolVar(HiveConf.ConfVars.METASTORE_EXECUTE_SET_UGI);
    TProcessor processor = setUgi ? new TUGIBasedProcessor<>(handler) : new TSetIpAddressProcessor<>(handler);
    TTransportFactory transport = setUgi ? new TUGIContainingTransport.Factory() : new TTransportFactory();
    TServerSocket socket = new TServerSocketKeepAlive(new TServerSocket(new InetSocketAddress(host, port)));
    TThreadPoolServer.Args a = new TThreadPoolServer.Args(socket)
        .processor(processor).transportFactory(transport)
        .protocolFactory(new TBinaryProtocol.Factory()).inputProtocolFactory(new TBinaryProtocol.Factory())
        .minWorkerThreads(conf.getIntVar(HiveConf.ConfVars.METASTORESERVERMINTHREADS))
        .maxWorkerThreads(conf.getIntVar(HiveConf.ConfVars.METASTORESERVERMAXTHREADS));
    TServer server = new TThreadPoolServer(a);
    Runtime.getRuntime().addShutdownHook(new Thread(server::stop));
    HiveMetaStore.LOG.info("Started the new metaserver on " + host + ":" + port);
    System.out.println("HMS listening on " + host + ":" + port);
    server.serve();
  }
}
