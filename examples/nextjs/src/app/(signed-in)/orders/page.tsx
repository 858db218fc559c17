import { CreateOrder, ImportOrders, OrdersList, PaymentFailedModal } from "@/components/orders";
import { JobsPanel } from "@/components/jobs";

export default async function OrdersPage({
  searchParams,
}: {
  searchParams: Promise<Record<string, string | string[] | undefined>>;
}) {
  const { status } = await searchParams;
  return (
    <div className="grid">
      {status === "success" ? (
        <div className="banner wide" role="status" data-banner="paid">
          Payment succeeded — thank you!
        </div>
      ) : null}
      <div className="stack">
        <CreateOrder />
        <ImportOrders />
      </div>
      <JobsPanel />
      <OrdersList />
      <PaymentFailedModal />
    </div>
  );
}
