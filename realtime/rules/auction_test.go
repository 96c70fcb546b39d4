package rules_test

// auctionRules is API.md's example.
const auctionRules = `record:
  "auction/item/$sellerId/$itemId":
    read: true
    create: "user.id == $sellerId"
    write: "user.data.canBid && data.price > oldData.price"
    delete: "user.id == $sellerId"
event:
  "chat/$room":
    publish: "user.id != ''"
    subscribe: true
rpc:
  "add-two":
    provide: "user.data.role == 'backend'"
    request: true
presence:
  "*":
    read: true
`
