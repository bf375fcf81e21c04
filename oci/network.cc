#include "oci/network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <memory>

#include "base/error.h"
#include "base/mac_address.h"
#include "base/unique_fd.h"

namespace kiln::oci {

namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Socket = std::unique_ptr<nl_sock, Deleter<nl_sock, nl_socket_free>>;
using Cache = std::unique_ptr<nl_cache, Deleter<nl_cache, nl_cache_free>>;
using Message = std::unique_ptr<nl_msg, Deleter<nl_msg, nlmsg_free>>;

Socket route_socket() {
  Socket s(nl_socket_alloc());
  if (!s) throw kiln::Error("allocate a netlink socket");
  if (int err = nl_connect(s.get(), NETLINK_ROUTE); err < 0)
    throw kiln::Error(std::string("connect to rtnetlink: ") + nl_geterror(err));
  return s;
}

// A cache `alloc` fills (libnl's rtnl_*_alloc_cache).
template <typename Alloc>
Cache fill(const char* what, Alloc&& alloc) {
  nl_cache* c = nullptr;
  if (int err = alloc(&c); err < 0)
    throw kiln::Error(std::string("read the namespace's ") + what + ": " + nl_geterror(err));
  return Cache(c);
}

template <typename F>
void each(nl_cache* c, F&& f) {
  for (nl_object* o = nl_cache_get_first(c); o; o = nl_cache_get_next(o)) f(o);
}

std::string ip_text(nl_addr* a) {
  char text[INET6_ADDRSTRLEN] = "";
  if (a && nl_addr_get_len(a) == (nl_addr_get_family(a) == AF_INET ? 4u : 16u))
    inet_ntop(nl_addr_get_family(a), nl_addr_get_binary_addr(a), text, sizeof text);
  return text;
}

std::string mac_text(nl_addr* a) {
  MacAddress mac;
  if (!a || nl_addr_get_len(a) != mac.bytes.size()) return "";
  std::memcpy(mac.bytes.data(), nl_addr_get_binary_addr(a), mac.bytes.size());
  return mac.to_string();
}

// A traffic-control request (RTM_*QDISC, RTM_*TFILTER) on `ifindex`, acknowledged; `body`
// adds the attributes. The kernel's error as a negative libnl code, 0 on success.
int tc_request(nl_sock* s, int type, int flags, int ifindex, uint32_t parent, uint32_t info,
               const std::function<int(nl_msg*)>& body) {
  Message m(nlmsg_alloc_simple(type, flags));
  if (!m) return -NLE_NOMEM;
  tcmsg t{};
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = ifindex;
  t.tcm_parent = parent;
  t.tcm_handle = type == RTM_NEWQDISC || type == RTM_DELQDISC ? TC_H_MAKE(TC_H_INGRESS, 0) : 0;
  t.tcm_info = info;
  if (int err = nlmsg_append(m.get(), &t, sizeof t, NLMSG_ALIGNTO); err < 0) return err;
  if (int err = body(m.get()); err < 0) return err;
  if (int err = nl_send_auto(s, m.get()); err < 0) return err;
  return nl_wait_for_ack(s);
}

void drop_ingress(nl_sock* s, int ifindex) {
  // Its filters go with it; none there is no error.
  tc_request(s, RTM_DELQDISC, 0, ifindex, TC_H_INGRESS, 0, [](nl_msg*) { return 0; });
}

void add_ingress(nl_sock* s, int ifindex, const std::string& name) {
  int err = tc_request(s, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, ifindex, TC_H_INGRESS, 0,
                       [](nl_msg* m) { return nla_put_string(m, TCA_KIND, "ingress"); });
  if (err < 0)
    throw kiln::Error("add an ingress qdisc to " + name + ": " + nl_geterror(err) +
                      " (the host kernel needs sch_ingress)");
}

// Every frame arriving on `from` leaves through `to`: a u32 filter whose one key matches
// anything ("match u8 0 0", as Kata has it: u32 is in every kernel, matchall is not) with a
// mirred egress redirect.
void redirect(nl_sock* s, int from, const std::string& from_name, int to) {
  int err = tc_request(
      s, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, from, TC_H_MAKE(TC_H_INGRESS, 0),
      TC_H_MAKE(1u << 16, htons(ETH_P_ALL)), [to](nl_msg* m) {
        // A selector with one key (mask 0: every frame), laid out as the kernel reads it.
        alignas(tc_u32_sel) unsigned char match[sizeof(tc_u32_sel) + sizeof(tc_u32_key)] = {};
        tc_u32_sel sel{};
        sel.flags = TC_U32_TERMINAL;
        sel.nkeys = 1;
        std::memcpy(match, &sel, sizeof sel);
        tc_mirred parms{};
        parms.action = TC_ACT_STOLEN;
        parms.eaction = TCA_EGRESS_REDIR;
        parms.ifindex = static_cast<uint32_t>(to);
        if (nla_put_string(m, TCA_KIND, "u32") < 0) return -NLE_NOMEM;
        nlattr* options = nla_nest_start(m, TCA_OPTIONS);
        if (!options || nla_put(m, TCA_U32_SEL, sizeof match, match) < 0) return -NLE_NOMEM;
        nlattr* actions = nla_nest_start(m, TCA_U32_ACT);
        nlattr* first = actions ? nla_nest_start(m, 1) : nullptr;
        if (!first || nla_put_string(m, TCA_ACT_KIND, "mirred") < 0) return -NLE_NOMEM;
        nlattr* act_options = nla_nest_start(m, TCA_ACT_OPTIONS);
        if (!act_options || nla_put(m, TCA_MIRRED_PARMS, sizeof parms, &parms) < 0)
          return -NLE_NOMEM;
        nla_nest_end(m, act_options);
        nla_nest_end(m, first);
        nla_nest_end(m, actions);
        nla_nest_end(m, options);
        return 0;
      });
  if (err < 0)
    throw kiln::Error("redirect " + from_name + "'s frames: " + nl_geterror(err) +
                      " (the host kernel needs cls_u32 and act_mirred)");
}

void delete_link(nl_sock* s, const std::string& name) {
  rtnl_link* l = rtnl_link_alloc();
  if (!l) return;
  rtnl_link_set_name(l, name.c_str());
  rtnl_link_delete(s, l);  // gone already: no error
  rtnl_link_put(l);
}

// A persistent TAP named `name` with `mtu`, up. Kiln's VMM attaches to it by name.
int make_tap(const std::string& name, unsigned mtu) {
  UniqueFd tun(open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!tun) throw_errno("open /dev/net/tun (the host kernel needs tun)");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(tun.get(), TUNSETIFF, &ifr) < 0) throw_errno("make TAP " + name);
  if (ioctl(tun.get(), TUNSETPERSIST, 1) < 0) throw_errno("make TAP " + name + " persistent");
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) throw_errno("socket");
  ifreq req{};
  std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
  req.ifr_mtu = static_cast<int>(mtu);
  if (mtu && ioctl(sock.get(), SIOCSIFMTU, &req) < 0)
    throw_errno("set TAP " + name + "'s MTU to " + std::to_string(mtu));
  if (ioctl(sock.get(), SIOCGIFFLAGS, &req) < 0) throw_errno("read TAP " + name + "'s flags");
  req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP);
  if (ioctl(sock.get(), SIOCSIFFLAGS, &req) < 0) throw_errno("bring TAP " + name + " up");
  int index = static_cast<int>(if_nametoindex(name.c_str()));
  if (!index) throw_errno("find TAP " + name);
  return index;
}

}  // namespace

std::vector<EngineLink> engine_links() {
  Socket s = route_socket();
  Cache links = fill("interfaces",
                     [&](nl_cache** c) { return rtnl_link_alloc_cache(s.get(), AF_UNSPEC, c); });
  Cache addrs = fill("addresses", [&](nl_cache** c) { return rtnl_addr_alloc_cache(s.get(), c); });
  Cache routes =
      fill("routes", [&](nl_cache** c) { return rtnl_route_alloc_cache(s.get(), AF_INET, 0, c); });
  std::vector<EngineLink> found;
  each(links.get(), [&](nl_object* o) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    if (rtnl_link_get_flags(l) & IFF_LOOPBACK) return;
    EngineLink e;
    e.name = rtnl_link_get_name(l) ? rtnl_link_get_name(l) : "";
    e.ifindex = rtnl_link_get_ifindex(l);
    e.mtu = rtnl_link_get_mtu(l);
    e.mac = mac_text(rtnl_link_get_addr(l));
    found.push_back(std::move(e));
  });
  auto link_of = [&](int ifindex) -> EngineLink* {
    for (auto& e : found)
      if (e.ifindex == ifindex) return &e;
    return nullptr;
  };
  each(addrs.get(), [&](nl_object* o) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    EngineLink* e = link_of(rtnl_addr_get_ifindex(a));
    if (!e || rtnl_addr_get_scope(a) == RT_SCOPE_LINK) return;  // lo's, or fe80::
    std::string ip = ip_text(rtnl_addr_get_local(a));
    if (rtnl_addr_get_family(a) == AF_INET && e->address.empty() && !ip.empty()) {
      e->address = ip;
      e->prefix = rtnl_addr_get_prefixlen(a);
    } else {
      e->left_out.push_back("address " + ip + "/" + std::to_string(rtnl_addr_get_prefixlen(a)));
    }
  });
  each(routes.get(), [&](nl_object* o) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_nnexthops(r) < 1) return;
    rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    EngineLink* e = link_of(rtnl_route_nh_get_ifindex(nh));
    if (!e) return;
    nl_addr* dst = rtnl_route_get_dst(r);
    std::string gw = ip_text(rtnl_route_nh_get_gateway(nh));
    if ((!dst || nl_addr_get_prefixlen(dst) == 0) && !gw.empty() && e->gateway.empty()) {
      e->gateway = gw;
    } else if (rtnl_route_get_protocol(r) != RTPROT_KERNEL) {  // the address's subnet: implied
      e->left_out.push_back("route " + ip_text(dst) + "/" +
                            std::to_string(dst ? nl_addr_get_prefixlen(dst) : 0) +
                            (gw.empty() ? "" : " via " + gw));
    }
  });
  return found;
}

void connect_tap(const EngineLink& link, const std::string& tap) {
  Socket s = route_socket();
  delete_link(s.get(), tap);  // an earlier container's
  drop_ingress(s.get(), link.ifindex);
  int tap_index = make_tap(tap, link.mtu);
  try {
    add_ingress(s.get(), link.ifindex, link.name);
    add_ingress(s.get(), tap_index, tap);
    redirect(s.get(), link.ifindex, link.name, tap_index);
    redirect(s.get(), tap_index, tap, link.ifindex);
  } catch (...) {
    drop_ingress(s.get(), link.ifindex);
    delete_link(s.get(), tap);
    throw;
  }
}

void disconnect_tap(const std::string& link, const std::string& tap) {
  Socket s = route_socket();
  if (int index = static_cast<int>(if_nametoindex(link.c_str()))) drop_ingress(s.get(), index);
  delete_link(s.get(), tap);
}

bool guest_name_ok(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return false;
  return true;
}

sandbox::SandboxNet guest_net(const EngineLink& link, const std::string& tap) {
  sandbox::SandboxNet n;
  n.tap = tap;
  n.mac = link.mac;
  if (!link.mac.empty()) n.name = link.name;
  n.address = link.address;
  n.prefix = link.prefix;
  if (!link.address.empty()) {
    n.gateway = link.gateway;
    n.mtu = link.mtu;
  }
  return n;
}

void enter_netns(const std::string& path) {
  UniqueFd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) throw_errno("open the network namespace " + path);
  if (setns(ns.get(), CLONE_NEWNET) < 0) throw_errno("enter the network namespace " + path);
}

bool in_netns(const std::string& path, const std::function<void()>& body) {
  UniqueFd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return false;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) throw_errno("pipe");
  UniqueFd in(p[0]), out(p[1]);
  pid_t child = fork();
  if (child < 0) throw_errno("fork");
  if (child == 0) {
    in.reset();
    try {
      if (setns(ns.get(), CLONE_NEWNET) < 0) throw_errno("enter the network namespace " + path);
      body();
    } catch (const std::exception& e) {
      (void)!::write(out.get(), e.what(), std::strlen(e.what()));
      _exit(1);
    }
    _exit(0);
  }
  out.reset();
  std::string why;
  char buf[1024];
  ssize_t n;
  while (why.size() < 4096 && (n = read(in.get(), buf, sizeof buf)) > 0)
    why.append(buf, static_cast<size_t>(n));
  int st = 0;
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    throw kiln::Error(why.empty() ? "in the network namespace " + path + ": the child failed"
                                  : why);
  return true;
}

}  // namespace kiln::oci
